"""The in-memory application recorder, with the same side tables as the SQL backends.

Events, the idempotency row and the index rows are checked and written under the
recorder's one lock, so a save is as atomic here as a transaction is in SQL; so is the check
that the aggregates a command only read are still at the versions it read (``read_versions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.popo import POPOApplicationRecorder

from run_mailbox.infrastructure.persistence.ready_heads import HeadsInClaimOrder, ReadyHeadRow, heads_of_index
from run_mailbox.infrastructure.persistence.rows import (
    DeadLetterPage,
    DispatchIndexRow,
    IdempotencyRow,
    ReadyThread,
    sorted_index_rows,
)


def _queue_order(row: DispatchIndexRow) -> tuple[int, int, str]:
    return (row.priority, row.created_at, row.dispatch_id)


class MemoryMailboxRecorder(POPOApplicationRecorder):
    def __init__(self) -> None:
        super().__init__()
        self._idempotency: dict[str, IdempotencyRow] = {}
        self._index: dict[str, DispatchIndexRow] = {}
        self._heads = HeadsInClaimOrder()
        """Each idle thread's head, in claim order."""

    def _insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        with self._database_lock:
            stale = [i for i, v in (kwargs.get("read_versions") or {}).items() if self._version_of(i) != v]
            if stale:
                raise IntegrityError(f"stale read of aggregate {stale[0]}: it changed since it was read")
            idempotency: IdempotencyRow | None = kwargs.get("idempotency")
            if idempotency is not None and idempotency.key in self._idempotency:
                msg = f"idempotency key already recorded: {idempotency.key!r}"
                raise IntegrityError(msg)
            notification_ids = super()._insert_events(stored_events, **kwargs)
            if idempotency is not None:
                self._idempotency[idempotency.key] = idempotency
            for row in sorted_index_rows(kwargs.get("index_rows")):
                self._index[row.dispatch_id] = row
            for thread_id, head in (kwargs.get("head_rows") or {}).items():
                if head is None:
                    self._heads.drop(thread_id)
                else:
                    self._heads.put(head)
            return notification_ids

    def _version_of(self, aggregate_id: UUID) -> int:
        return max(self._stored_events_index.get(str(aggregate_id), ()), default=0)

    def current_versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        with self._database_lock:
            return {i: self._version_of(i) for i in aggregate_ids}

    def replace_dispatch_index(self, rows: list[DispatchIndexRow]) -> None:
        with self._database_lock:
            self._index = {row.dispatch_id: row for row in rows}
            self._heads = HeadsInClaimOrder(heads_of_index(rows))

    def _rows(self) -> list[DispatchIndexRow]:
        with self._database_lock:
            return list(self._index.values())

    def find_idempotency(self, key: str) -> IdempotencyRow | None:
        with self._database_lock:
            return self._idempotency.get(key)

    def ready_dispatches(self, now: int, limit: int) -> list[DispatchIndexRow]:
        rows = self._rows()
        busy = {r.thread_id for r in rows if r.status == "claimed"}
        ready = [r for r in rows if r.status == "queued" and r.available_at <= now and r.thread_id not in busy]
        return sorted(ready, key=_queue_order)[:limit]

    def ready_threads(self, now: int, limit: int, *, runs: bool = False) -> list[ReadyThread]:
        with self._database_lock:
            index = self._index if runs else {}
            return [
                ReadyThread(h.thread_id, h.dispatch_id, row.run_id if (row := index.get(h.dispatch_id)) else None)
                for h in self._heads.candidates(now, limit)
            ]

    def ready_heads(self) -> list[ReadyHeadRow]:
        with self._database_lock:
            return sorted(self._heads.heads(), key=lambda h: h.thread_id)

    def expired_claims(self, now: int, limit: int) -> list[DispatchIndexRow]:
        rows = [r for r in self._rows() if r.status == "claimed" and r.lease_until is not None and r.lease_until < now]
        return sorted(rows, key=lambda r: (r.lease_until, r.dispatch_id))[:limit]

    def thread_dispatches(self, thread_id: str) -> list[DispatchIndexRow]:
        return sorted((r for r in self._rows() if r.thread_id == thread_id), key=_queue_order)

    def all_dispatches(self) -> list[DispatchIndexRow]:
        return sorted(self._rows(), key=lambda r: r.dispatch_id)

    def count_by_status(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self._rows():
            counts[row.status] = counts.get(row.status, 0) + 1
        return counts

    def dead_letters(self, page: DeadLetterPage) -> list[DispatchIndexRow]:
        return page.select(self._rows())
