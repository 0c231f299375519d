"""View: one row per tool-permission ticket (run_id, tool_call_id), from pending to resolved.

Statuses: ``pending`` (RunSuspended) until a decision arrives; MailboxDecisionReceived makes
it ``resolved`` (action resume) or ``cancelled`` (action cancel), and ToolPermissionResolved
refines it to ``approved`` / ``denied`` when ``result.approved`` is a boolean. A ticket still
pending when its run ends becomes ``abandoned``.

Rows are deduplicated by decision id: the first decision applied to a ticket owns it, and a
MailboxDecisionReceived for the decision already applied changes nothing (so re-applying it
never turns ``approved`` back into ``resolved``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.run_events import (
    MailboxDecisionReceived,
    RunErrored,
    RunFinished,
    RunSuspended,
    ToolPermissionResolved,
)
from run_mailbox.projections.schema import Table, table_of
from run_mailbox.projections.view import ViewStore, ViewTx

TABLE = "permission_resolutions"
PENDING = "pending"
ABANDONED = "abandoned"


class PermissionRow(BaseModel):
    """One tool-permission ticket: ``status`` is pending, resolved, cancelled, approved, denied or abandoned."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    tool_call_id: str
    thread_id: str
    tool_name: str | None
    status: str
    approved: bool | None
    decision_id: str | None
    action: str | None
    reason: str | None
    delivery_path: str | None
    dispatch_id: str | None
    requested_at: int | None
    resolved_at: int | None
    requested_position: int
    ticket_index: int


_TABLE = table_of(PermissionRow, TABLE, key=("run_id", "tool_call_id"), indexes=(("status", "thread_id"), ("run_id",)))


def _decided(event: MailboxDecisionReceived | ToolPermissionResolved, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "decision_id": event.decision_id,
        "action": event.action,
        "reason": event.reason,
        "delivery_path": event.delivery_path,
        "dispatch_id": event.dispatch_id,
        "resolved_at": event.now,
    }


class PermissionResolutionsView:
    name: str = "permission_resolutions"
    tables: tuple[Table, ...] = (_TABLE,)
    handles: tuple[type[DomainEvent], ...] = (
        RunSuspended,
        MailboxDecisionReceived,
        ToolPermissionResolved,
        RunFinished,
        RunErrored,
    )

    def prefetch(self, batch: Sequence[tuple[int, DomainEvent]]) -> dict[str, set[tuple[Any, ...]]]:
        """The rows ``handle`` reads: requested and decided tickets, and every ticket of a run that ends."""
        keys: set[tuple[Any, ...]] = set()
        for _, event in batch:
            if isinstance(event, RunSuspended):
                keys.update((event.run_id, ticket.tool_call_id) for ticket in event.tickets)
            elif isinstance(event, (MailboxDecisionReceived, ToolPermissionResolved)):
                keys.add((event.run_id, event.tool_call_id))
            elif isinstance(event, (RunFinished, RunErrored)):
                keys.add((event.run_id,))  # a key prefix: all the run's tickets (``rows`` by run_id)
        return {TABLE: keys}

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None:
        if isinstance(event, RunSuspended):
            self._requested(position, event, tx)
        elif isinstance(event, MailboxDecisionReceived):
            row = self._ticket(position, event, tx)
            if row["decision_id"] is None:  # else this (or an earlier) decision was applied already
                row.update(_decided(event, "cancelled" if event.action == "cancel" else "resolved"))
                tx.upsert(TABLE, row)
        elif isinstance(event, ToolPermissionResolved):
            row = self._ticket(position, event, tx)
            if row["decision_id"] in (None, event.decision_id):
                row.update(_decided(event, "approved" if event.approved else "denied"), approved=event.approved)
                tx.upsert(TABLE, row)
        elif isinstance(event, (RunFinished, RunErrored)):
            for row in tx.rows(TABLE, {"run_id": event.run_id, "status": PENDING}):
                tx.upsert(TABLE, {**row, "status": ABANDONED, "resolved_at": event.now})

    @staticmethod
    def _requested(position: int, event: RunSuspended, tx: ViewTx) -> None:
        for index, ticket in enumerate(event.tickets):
            if tx.get(TABLE, (event.run_id, ticket.tool_call_id)) is not None:
                continue  # requested already (a re-applied suspension): keep what followed
            tx.upsert(
                TABLE,
                {
                    "run_id": event.run_id,
                    "tool_call_id": ticket.tool_call_id,
                    "thread_id": event.thread_id,
                    "tool_name": ticket.tool_name,
                    "status": PENDING,
                    "approved": None,
                    "decision_id": None,
                    "action": None,
                    "reason": None,
                    "delivery_path": None,
                    "dispatch_id": event.dispatch_id,
                    "requested_at": event.now,
                    "resolved_at": None,
                    "requested_position": position,
                    "ticket_index": index,
                },
            )

    @staticmethod
    def _ticket(position: int, event: MailboxDecisionReceived | ToolPermissionResolved, tx: ViewTx) -> dict[str, Any]:
        """The ticket's row, or a new one when the log holds no suspension for it."""
        row = tx.get(TABLE, (event.run_id, event.tool_call_id))
        if row is not None:
            return dict(row)
        return {
            "run_id": event.run_id,
            "tool_call_id": event.tool_call_id,
            "thread_id": event.thread_id,
            "tool_name": None,
            "status": PENDING,
            "approved": None,
            "decision_id": None,
            "action": None,
            "reason": None,
            "delivery_path": None,
            "dispatch_id": None,
            "requested_at": None,
            "resolved_at": None,
            "requested_position": position,
            "ticket_index": 0,
        }


VIEW = PermissionResolutionsView()


# ---------------------------------------------------------------------- queries

_ORDER = ("requested_position", "ticket_index")


def pending_by_thread(store: ViewStore, thread_id: str | None = None) -> list[PermissionRow]:
    """Tickets still waiting for a decision (of one thread, or of all), oldest first."""
    where: dict[str, Any] = {"status": PENDING}
    if thread_id is not None:
        where["thread_id"] = thread_id
    return [PermissionRow.model_validate(row) for row in store.select(TABLE, where, order_by=_ORDER)]


def history_of_run(store: ViewStore, run_id: str) -> list[PermissionRow]:
    """Every ticket of the run with its outcome, in the order they were requested."""
    return [PermissionRow.model_validate(row) for row in store.select(TABLE, {"run_id": run_id}, order_by=_ORDER)]
