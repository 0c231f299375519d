"""View: one row per dispatch, copied from the record its latest event carries.

Every Dispatch event carries the whole post-transition record, so a row is written from the
event alone. The row keeps the log position it was written from and an older event never
overwrites a newer one, so re-applying any event (or a whole batch) changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.values import DispatchStatus
from run_mailbox.projections.schema import Column, Table
from run_mailbox.projections.view import ViewTx

TABLE = "dispatch_queue"

_TABLE = Table(
    name=TABLE,
    columns=(
        Column("dispatch_id", "text", nullable=False),
        Column("thread_id", "text", nullable=False),
        Column("run_id", "text", nullable=False),
        Column("status", "text", nullable=False),
        Column("priority", "int", nullable=False),
        Column("dispatch_epoch", "int", nullable=False),
        Column("created_at", "int", nullable=False),
        Column("available_at", "int", nullable=False),
        Column("updated_at", "int", nullable=False),
        Column("completed_at", "int"),
        Column("lease_until", "int"),
        Column("claimed_by", "text"),
        Column("attempt_count", "int", nullable=False),
        Column("max_attempts", "int", nullable=False),
        Column("last_error", "text"),
        Column("position", "int", nullable=False),
    ),
    key=("dispatch_id",),
    indexes=(("status", "priority", "created_at"), ("status", "lease_until"), ("thread_id",)),
)


class DispatchQueueView:
    name: str = "dispatch_queue"
    tables: tuple[Table, ...] = (_TABLE,)

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


def ready(store: Any, now: int, limit: int = 100) -> list[dict[str, Any]]:
    """Queued dispatches due at ``now`` (available_at <= now) on threads with no claimed
    dispatch (a thread runs one dispatch at a time), in claim order: priority, age, id."""
    busy = {row["thread_id"] for row in store.select(TABLE, {"status": DispatchStatus.CLAIMED.value})}
    queued = store.select(
        TABLE, {"status": DispatchStatus.QUEUED.value}, order_by=("priority", "created_at", "dispatch_id")
    )
    return [row for row in queued if row["available_at"] <= now and row["thread_id"] not in busy][:limit]


def claimed_by_lease_expiry(store: Any, limit: int = 100) -> list[dict[str, Any]]:
    """Claimed dispatches, the one whose lease runs out first first."""
    return list(
        store.select(
            TABLE, {"status": DispatchStatus.CLAIMED.value}, order_by=("lease_until", "dispatch_id"), limit=limit
        )
    )


def dead_letters(store: Any, limit: int = 100) -> list[dict[str, Any]]:
    """Dead-lettered dispatches, oldest first."""
    return list(
        store.select(
            TABLE,
            {"status": DispatchStatus.DEAD_LETTER.value},
            order_by=("completed_at", "dispatch_id"),
            limit=limit,
        )
    )
