"""Commands that hand work to workers under a lease: claim, claim_dispatch, claim_next,
extend_lease, reclaim_expired_leases."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Annotated, Any, ClassVar

from pydantic import Strict

from run_mailbox.domain import policies
from run_mailbox.domain.commands.base import Command, Id, LeaseMs, Limit, check_later, command_model
from run_mailbox.domain.dispatch import DispatchRecord


@command_model
class Claim(Command[DispatchRecord | None]):
    """Claims the thread's best ready dispatch (priority, then age) for ``lease_ms``; None when
    the thread has a claimed dispatch already or nothing is due. With ``start``, also records its
    start in the same transaction (as ``record_start`` would)."""

    name: ClassVar[str] = "claim"
    result_type: ClassVar[Any] = DispatchRecord | None

    thread_id: Id
    _: KW_ONLY
    consumer_id: Id
    lease_ms: LeaseMs = policies.DEFAULT_LEASE_MS
    start: Annotated[bool, Strict()] = False

    def check_at(self, now: int) -> None:
        check_later("lease_ms", self.lease_ms, now, self.lease_ms)


@command_model
class ClaimDispatch(Command[DispatchRecord | None]):
    """Claims one dispatch by id, whatever its ``available_at``; None while its thread has another
    claimed dispatch. With ``start``, also records its start in the same transaction."""

    name: ClassVar[str] = "claim_dispatch"
    result_type: ClassVar[Any] = DispatchRecord | None

    dispatch_id: Id
    _: KW_ONLY
    consumer_id: Id
    lease_ms: LeaseMs = policies.DEFAULT_LEASE_MS
    start: Annotated[bool, Strict()] = False

    def check_at(self, now: int) -> None:
        check_later("lease_ms", self.lease_ms, now, self.lease_ms)


@command_model
class ClaimNext(Command[list[DispatchRecord]]):
    """Claims up to ``limit`` of the best ready dispatches across threads, at most one per thread,
    in one transaction (best first: priority, then age), passing over the threads another
    ``claim_next`` of the same service is claiming at that moment. With ``start``, also records the
    start of each (as ``record_start`` would, in the same transaction): the records come back running."""

    name: ClassVar[str] = "claim_next"
    result_type: ClassVar[Any] = list[DispatchRecord]

    _: KW_ONLY
    consumer_id: Id
    lease_ms: LeaseMs = policies.DEFAULT_LEASE_MS
    limit: Limit = 1
    start: Annotated[bool, Strict()] = False

    def check_at(self, now: int) -> None:
        check_later("lease_ms", self.lease_ms, now, self.lease_ms)


@command_model
class ExtendLease(Command[bool]):
    """Extends the lease to now + ``lease_ms``; False when ``claim_token`` does not own the
    dispatch (or an interrupt fenced it: it is then superseded)."""

    name: ClassVar[str] = "extend_lease"
    result_type: ClassVar[type] = bool

    dispatch_id: Id
    _: KW_ONLY
    claim_token: Id
    lease_ms: LeaseMs = policies.DEFAULT_LEASE_MS

    def check_at(self, now: int) -> None:
        check_later("lease_ms", self.lease_ms, now, self.lease_ms)


@command_model
class ReclaimExpiredLeases(Command[list[DispatchRecord]]):
    """Requeues (or, on the last attempt, dead-letters) up to ``limit`` dispatches whose lease ran
    out (strictly before now), in one transaction; returns them."""

    name: ClassVar[str] = "reclaim_expired_leases"
    result_type: ClassVar[Any] = list[DispatchRecord]

    _: KW_ONLY
    limit: Limit = policies.DEFAULT_RECLAIM_LIMIT
