"""View: one row per dispatch, copied from the record its latest event carries.

Every Dispatch event carries the whole post-transition record, so a row is written from the
event alone. The row keeps the log position it was written from and an older event never
overwrites a newer one, so re-applying any event (or a whole batch) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.values import DispatchStatus
from run_mailbox.projections.schema import Table, table_of
from run_mailbox.projections.view import ViewStore, ViewTx

TABLE = "dispatch_queue"


class DispatchQueueRow(BaseModel):
    """One dispatch as the queue view holds it (``position``: the log position it was written from)."""

    model_config = ConfigDict(frozen=True)

    dispatch_id: str
    thread_id: str
    run_id: str
    status: str
    priority: int
    dispatch_epoch: int
    created_at: int
    available_at: int
    updated_at: int
    completed_at: int | None
    lease_until: int | None
    claimed_by: str | None
    attempt_count: int
    max_attempts: int
    last_error: str | None
    position: int


_TABLE = table_of(
    DispatchQueueRow,
    TABLE,
    key=("dispatch_id",),
    indexes=(("status", "priority", "created_at"), ("status", "lease_until"), ("thread_id",)),
)


class DispatchQueueView:
    name: str = "dispatch_queue"
    tables: tuple[Table, ...] = (_TABLE,)
    handles: tuple[type[DomainEvent], ...] = (Dispatch.Event,)

    def prefetch(self, batch: Sequence[tuple[int, DomainEvent]]) -> dict[str, set[tuple[Any, ...]]]:
        """The rows ``handle`` reads: each dispatch's row."""
        return {TABLE: {(e.dispatch.dispatch_id,) for _, e in batch if isinstance(e, Dispatch.Event)}}

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None:
        if not isinstance(event, Dispatch.Event):
            return
        record = event.dispatch
        current = tx.get(TABLE, (record.dispatch_id,))
        if current is not None and current["position"] >= position:
            return  # this event, or a later one, was applied already
        tx.upsert(
            TABLE,
            {
                "dispatch_id": record.dispatch_id,
                "thread_id": record.thread_id,
                "run_id": record.run_id,
                "status": record.status.value,
                "priority": record.priority,
                "dispatch_epoch": record.dispatch_epoch,
                "created_at": record.created_at,
                "available_at": record.available_at,
                "updated_at": record.updated_at,
                "completed_at": record.completed_at,
                "lease_until": record.lease_until,
                "claimed_by": record.claimed_by,
                "attempt_count": record.attempt_count,
                "max_attempts": record.max_attempts,
                "last_error": record.last_error,
                "position": position,
            },
        )


VIEW = DispatchQueueView()


# ---------------------------------------------------------------------- queries


def ready(store: ViewStore, now: int, limit: int = 100) -> list[DispatchQueueRow]:
    """Queued dispatches due at ``now`` (available_at <= now) on threads with no claimed
    dispatch (a thread runs one dispatch at a time), in claim order: priority, age, id."""
    busy = {row["thread_id"] for row in store.select(TABLE, {"status": DispatchStatus.CLAIMED.value})}
    window = limit + len(busy) + 16
    while True:  # the first ``window`` queued in claim order; a wider one while too many of them are skipped
        queued = store.select(
            TABLE,
            {"status": DispatchStatus.QUEUED.value},
            order_by=("priority", "created_at", "dispatch_id"),
            limit=window,
        )
        due = [row for row in queued if row["available_at"] <= now and row["thread_id"] not in busy][:limit]
        if len(due) == limit or len(queued) < window:
            return [DispatchQueueRow.model_validate(row) for row in due]
        window *= 4


def claimed_by_lease_expiry(store: ViewStore, limit: int = 100) -> list[DispatchQueueRow]:
    """Claimed dispatches, the one whose lease runs out first first."""
    rows = store.select(
        TABLE, {"status": DispatchStatus.CLAIMED.value}, order_by=("lease_until", "dispatch_id"), limit=limit
    )
    return [DispatchQueueRow.model_validate(row) for row in rows]


def dead_letters(store: ViewStore, limit: int = 100) -> list[DispatchQueueRow]:
    """Dead-lettered dispatches, oldest first."""
    rows = store.select(
        TABLE, {"status": DispatchStatus.DEAD_LETTER.value}, order_by=("completed_at", "dispatch_id"), limit=limit
    )
    return [DispatchQueueRow.model_validate(row) for row in rows]
