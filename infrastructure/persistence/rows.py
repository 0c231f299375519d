"""Rows the mailbox writes beside its events, in the same transaction.

- the **idempotency table**: one row per command issued with an idempotency key;
- the **dispatch index**: one row per dispatch with the fields the schedulers search by
  (status, priority, age, availability, lease). It is part of the write model, not a
  projection: it is updated in the transaction that records the dispatch's events, so it
  never lags, and ``mailbox verify`` checks it against the aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

from run_mailbox.domain.dispatch import DispatchRecord


@dataclass(frozen=True)
class IdempotencyRow:
    key: str
    command: str
    digest: str
    result: str  # JSON


@dataclass(frozen=True)
class DispatchIndexRow:
    dispatch_id: str
    thread_id: str
    run_id: str
    status: str
    priority: int
    created_at: int
    available_at: int
    lease_until: int | None
    updated_at: int

    @classmethod
    def of(cls, record: DispatchRecord) -> DispatchIndexRow:
        return cls(
            dispatch_id=record.dispatch_id,
            thread_id=record.thread_id,
            run_id=record.run_id,
            status=record.status.value,
            priority=record.priority,
            created_at=record.created_at,
            available_at=record.available_at,
            lease_until=record.lease_until,
            updated_at=record.updated_at,
        )

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.dispatch_id,
            self.thread_id,
            self.run_id,
            self.status,
            self.priority,
            self.created_at,
            self.available_at,
            self.lease_until,
            self.updated_at,
        )


INDEX_COLUMNS = "dispatch_id, thread_id, run_id, status, priority, created_at, available_at, lease_until, updated_at"


@dataclass(frozen=True)
class DeadLetterPage:
    """One page of dead-lettered index rows, oldest first (a dead letter's ``updated_at`` is when it
    was dead-lettered: nothing changes it afterwards): of one thread or all, dead-lettered from
    ``since`` to ``until`` (both included), after the row ``after`` (its updated_at and dispatch id)."""

    thread_id: str | None = None
    since: int | None = None
    until: int | None = None
    after: tuple[int, str] | None = None
    limit: int = 100

    ORDER = "ORDER BY updated_at, dispatch_id"

    def where(self, mark: str) -> tuple[str, list[Any]]:
        """The SQL condition (``mark`` is the driver's placeholder) and its parameters."""
        clauses: list[str] = ["status = 'dead_letter'"]
        params: list[Any] = []
        if self.thread_id is not None:
            clauses.append(f"thread_id = {mark}")
            params.append(self.thread_id)
        if self.since is not None:
            clauses.append(f"updated_at >= {mark}")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"updated_at <= {mark}")
            params.append(self.until)
        if self.after is not None:
            clauses.append(f"(updated_at > {mark} OR (updated_at = {mark} AND dispatch_id > {mark}))")
            params += [self.after[0], self.after[0], self.after[1]]
        return " AND ".join(clauses), params

    def select(self, rows: Sequence[DispatchIndexRow]) -> list[DispatchIndexRow]:
        """The page, from rows in memory."""
        found = [
            row
            for row in rows
            if row.status == "dead_letter"
            and (self.thread_id is None or row.thread_id == self.thread_id)
            and (self.since is None or row.updated_at >= self.since)
            and (self.until is None or row.updated_at <= self.until)
            and (self.after is None or (row.updated_at, row.dispatch_id) > self.after)
        ]
        return sorted(found, key=lambda row: (row.updated_at, row.dispatch_id))[: self.limit]


@dataclass(frozen=True)
class ReadyThread:
    """A thread a claim looks at, with its head dispatch and, when asked for, that dispatch's run (else
    None): a cold claim reads the three aggregates in one query, before it knows what it takes."""

    thread_id: str
    dispatch_id: str
    run_id: str | None


class MailboxTables(Protocol):
    """What the service needs from a recorder beyond the library's interface."""

    def find_idempotency(self, key: str) -> IdempotencyRow | None: ...

    def ready_dispatches(self, now: int, limit: int) -> list[DispatchIndexRow]: ...

    def ready_threads(self, now: int, limit: int, *, runs: bool = False) -> list[ReadyThread]: ...

    def ready_heads(self) -> list[Any]: ...

    def expired_claims(self, now: int, limit: int) -> list[DispatchIndexRow]: ...

    def thread_dispatches(self, thread_id: str) -> list[DispatchIndexRow]: ...

    def all_dispatches(self) -> list[DispatchIndexRow]: ...

    def count_by_status(self) -> dict[str, int]: ...

    def dead_letters(self, page: DeadLetterPage) -> list[DispatchIndexRow]: ...

    def replace_dispatch_index(self, rows: list[DispatchIndexRow]) -> None: ...

    def current_versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]: ...


def sorted_index_rows(rows: Any) -> list[DispatchIndexRow]:
    """Rows in dispatch-id order, the last row per id winning: a fixed lock order."""
    latest: dict[str, DispatchIndexRow] = {}
    for row in rows or ():
        latest[row.dispatch_id] = row
    return [latest[k] for k in sorted(latest)]
