"""View: one row per run, mirroring the Run aggregate's record, plus the attempt count of the
run's latest dispatch.

Run events are applied in log order with a position guard (``position``): an event at or
below the row's position changes nothing. Dispatch events of the run set ``attempts`` under
a guard of their own (``dispatch_position``), so re-applying any event changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.run import TOOL_PERMISSION
from run_mailbox.domain.run_events import (
    MailboxDecisionReceived,
    RunCreated,
    RunErrored,
    RunEvent,
    RunFinished,
    RunStarted,
    RunSuspended,
    ThreadMessagesCheckpointed,
)
from run_mailbox.domain.values import RunStatus, TerminationReason
from run_mailbox.projections.schema import Table, table_of
from run_mailbox.projections.view import ViewStore, ViewTx

TABLE = "run_status"


class RunStatusRow(BaseModel):
    """One run as the status view holds it; ``attempts``: the attempt count of its latest dispatch."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    thread_id: str
    agent_id: str
    status: str
    waiting_reason: str | None
    dispatch_id: str | None
    attempts: int
    termination: dict[str, Any] | None
    error: str | None
    created_at: int
    started_at: int | None
    finished_at: int | None
    updated_at: int
    position: int
    dispatch_position: int


_TABLE = table_of(RunStatusRow, TABLE, key=("run_id",), indexes=(("status",), ("thread_id",)))


def _finished(termination: TerminationReason, error: str | None, now: int) -> dict[str, Any]:
    return {
        "status": RunStatus.DONE.value,
        "termination": termination.to_json(),
        "error": error,
        "finished_at": now,
        "updated_at": now,
    }


def _changes(event: RunEvent, row: dict[str, Any]) -> dict[str, Any] | None:
    """The fields a run event sets (as the Run aggregate does), or None for no change."""
    if isinstance(event, RunStarted):
        started = row["started_at"] if row["started_at"] is not None else event.now
        return {
            "status": RunStatus.RUNNING.value,
            "waiting_reason": None,
            "dispatch_id": event.dispatch_id,
            "started_at": started,
            "updated_at": event.now,
        }
    if isinstance(event, RunSuspended):
        return {"status": RunStatus.WAITING.value, "waiting_reason": TOOL_PERMISSION, "updated_at": event.now}
    if isinstance(event, MailboxDecisionReceived):
        return {"dispatch_id": event.dispatch_id, "updated_at": event.now}
    if isinstance(event, ThreadMessagesCheckpointed):
        return {"updated_at": event.now}
    if isinstance(event, RunFinished):
        return _finished(event.termination, event.error, event.now)
    if isinstance(event, RunErrored):
        return _finished(TerminationReason.error(event.message), event.message, event.now)
    return None


class RunStatusView:
    name: str = "run_status"
    tables: tuple[Table, ...] = (_TABLE,)
    handles: tuple[type[DomainEvent], ...] = (Dispatch.Event, RunEvent)

    def prefetch(self, batch: Sequence[tuple[int, DomainEvent]]) -> dict[str, set[tuple[Any, ...]]]:
        """The rows ``handle`` reads: the run's row for every run event and every dispatch event."""
        runs: set[tuple[Any, ...]] = set()
        for _, event in batch:
            if isinstance(event, Dispatch.Event):
                runs.add((event.dispatch.run_id,))
            elif isinstance(event, RunEvent):
                runs.add((event.run_id,))
        return {TABLE: runs}

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None:
        if isinstance(event, Dispatch.Event):
            self._dispatch(position, event, tx)
        elif isinstance(event, RunCreated):
            if tx.get(TABLE, (event.run_id,)) is None:
                tx.upsert(TABLE, _created(position, event))
        elif isinstance(event, RunEvent):
            row = tx.get(TABLE, (event.run_id,))
            if row is None or row["position"] >= position:
                return  # no such run yet, or this event (or a later one) was applied already
            changes = _changes(event, row)
            if changes is not None:
                tx.upsert(TABLE, {**row, **changes, "position": position})

    @staticmethod
    def _dispatch(position: int, event: Dispatch.Event, tx: ViewTx) -> None:
        # A run's first dispatch is queued before the run is created; RunCreated then
        # starts at attempt 0 and marks its own position as the dispatch position.
        row = tx.get(TABLE, (event.dispatch.run_id,))
        if row is None or row["dispatch_position"] >= position:
            return
        tx.upsert(TABLE, {**row, "attempts": event.dispatch.attempt_count, "dispatch_position": position})


def _created(position: int, event: RunCreated) -> dict[str, Any]:
    return {
        "run_id": event.run_id,
        "thread_id": event.thread_id,
        "agent_id": event.agent_id,
        "status": RunStatus.CREATED.value,
        "waiting_reason": None,
        "dispatch_id": event.dispatch_id,
        "attempts": 0,
        "termination": None,
        "error": None,
        "created_at": event.now,
        "started_at": None,
        "finished_at": None,
        "updated_at": event.now,
        "position": position,
        "dispatch_position": position,
    }


VIEW = RunStatusView()


# ---------------------------------------------------------------------- queries


def get(store: ViewStore, run_id: str) -> RunStatusRow | None:
    """The run's row, or None when the view has none."""
    rows = store.select(TABLE, {"run_id": run_id}, limit=1)
    return RunStatusRow.model_validate(rows[0]) if rows else None


def counts_by_status(store: ViewStore) -> dict[str, int]:
    """How many runs are in each status (every status present, zero when none)."""
    return {status.value: store.count(TABLE, {"status": status.value}) for status in RunStatus}
