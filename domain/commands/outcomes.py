"""Commands a worker reports an attempt's course with: record_start, ack, nack, dead_letter.

Each needs the ``claim_token`` the claim returned; after an interrupt, the owner's next write
supersedes the dispatch and is refused with DispatchSuperseded (the lazy epoch fence).
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import ClassVar

from run_mailbox.domain import policies
from run_mailbox.domain.commands.base import Command, Id, Millis, Text, check_later, command_model
from run_mailbox.domain.dispatch import DispatchRecord


@command_model
class RecordStart(Command[DispatchRecord]):
    """Records that the runtime started the claimed dispatch (RunSubmitted); the run becomes
    running. ``instance_id`` names the runtime attempt (default: ``<dispatch_id>/<attempt>``)."""

    name: ClassVar[str] = "record_start"
    result_type: ClassVar[type] = DispatchRecord

    dispatch_id: Id
    _: KW_ONLY
    claim_token: Id
    instance_id: Id | None = None


@command_model
class Ack(Command[DispatchRecord]):
    """Delivery done: the dispatch is acked and its run, unless waiting for decisions, ends naturally."""

    name: ClassVar[str] = "ack"
    result_type: ClassVar[type] = DispatchRecord

    dispatch_id: Id
    _: KW_ONLY
    claim_token: Id


@command_model
class Nack(Command[DispatchRecord]):
    """A transient failure: the dispatch is requeued at ``retry_at`` (default: after the backoff,
    250 ms doubling per failure, capped at 30 s), or dead-lettered once attempts run out."""

    name: ClassVar[str] = "nack"
    result_type: ClassVar[type] = DispatchRecord

    dispatch_id: Id
    _: KW_ONLY
    claim_token: Id
    error: Text
    retry_at: Millis | None = None

    def check_at(self, now: int) -> None:
        if self.retry_at is None:  # the backoff's longest delay, whatever the attempt
            check_later("now", now, now, policies.RETRY_CAP_MS)


@command_model
class DeadLetter(Command[DispatchRecord]):
    """A permanent failure: the dispatch is dead-lettered and the run errors (RunErrored)."""

    name: ClassVar[str] = "dead_letter"
    result_type: ClassVar[type] = DispatchRecord

    dispatch_id: Id
    _: KW_ONLY
    claim_token: Id
    error: Text
