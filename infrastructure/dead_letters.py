"""Finding dead letters for an operator, the same way for a listing and for a redrive.

The dispatch index narrows by status, thread and time (a dead letter's ``updated_at`` is when it was
dead-lettered: nothing changes it afterwards), page by page, oldest first. The redrive run id of each
candidate (derived from its dispatch id) says whether it was redriven, in one query per page; its
dispatch and run records give the agent, and its last event (``DispatchDeadLettered``, for ever the
last one of a dead letter) the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol
from uuid import UUID

from run_mailbox.domain.commands import DeadLetterFilter
from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.ids import dispatch_aggregate_id, redrive_run_id, run_aggregate_id
from run_mailbox.domain.results import DeadLetterEntry
from run_mailbox.domain.run_record import RunRecord
from run_mailbox.domain.values import DeadLetterReason, DispatchStatus
from run_mailbox.infrastructure.persistence.rows import DeadLetterPage, MailboxTables

PAGE = 500


class Source(Protocol):
    """Where the records of the candidates are read: a command's unit of work, or the queries."""

    tables: MailboxTables

    def dispatches(self, dispatch_ids: list[str]) -> dict[str, DispatchRecord]: ...

    def runs(self, run_ids: list[str]) -> dict[str, RunRecord]: ...

    def last_event(self, aggregate_id: UUID) -> Any: ...


def redriven_by(tables: MailboxTables, dispatch_ids: list[str]) -> dict[str, str]:
    """The dispatches of ``dispatch_ids`` that were redriven, with the run that redrives each."""
    runs = {d: redrive_run_id(d) for d in dispatch_ids}
    versions = tables.current_versions([run_aggregate_id(r) for r in runs.values()])
    return {d: r for d, r in runs.items() if versions.get(run_aggregate_id(r), 0) > 0}


def reason_of(last_event: Callable[[UUID], Any], dispatch_id: str) -> DeadLetterReason:
    """Why the dead letter ``dispatch_id`` was dead-lettered, from its last event."""
    event = last_event(dispatch_aggregate_id(dispatch_id))
    if not isinstance(event, Dispatch.DispatchDeadLettered):  # the index and the log disagree
        raise RuntimeError(f"dispatch {dispatch_id} is not dead-lettered in the log (rebuild the dispatch index?)")
    return event.reason


def entry(record: DispatchRecord, run: RunRecord, reason: DeadLetterReason, by: str | None) -> DeadLetterEntry:
    return DeadLetterEntry(
        dispatch_id=record.dispatch_id,
        thread_id=record.thread_id,
        run_id=record.run_id,
        agent_id=run.agent_id,
        reason=reason,
        error=record.last_error,
        attempt_count=record.attempt_count,
        max_attempts=record.max_attempts,
        priority=record.priority,
        dead_lettered_at=record.completed_at if record.completed_at is not None else record.updated_at,
        redriven_by=by,
    )


def find_dead_letters(
    source: Source, matching: DeadLetterFilter, *, limit: int, include_redriven: bool = False
) -> tuple[list[DeadLetterEntry], bool]:
    """Up to ``limit`` dead letters matching the filter (redriven ones only when ``include_redriven``),
    oldest first, and whether more match."""
    found: list[DeadLetterEntry] = []
    page = DeadLetterPage(thread_id=matching.thread_id, since=matching.since, until=matching.until, limit=PAGE)
    while True:
        rows = source.tables.dead_letters(page)
        if not rows:
            return found, False
        redriven = redriven_by(source.tables, [row.dispatch_id for row in rows])
        wanted = [row for row in rows if include_redriven or row.dispatch_id not in redriven]
        dispatches = source.dispatches([row.dispatch_id for row in wanted])
        runs = source.runs(list(dict.fromkeys(d.run_id for d in dispatches.values())))
        for row in wanted:
            record = dispatches.get(row.dispatch_id)
            if record is None or record.status is not DispatchStatus.DEAD_LETTER or record.run_id not in runs:
                continue  # (the index is written with the events: only a hand-edited store gets here)
            run = runs[record.run_id]
            if matching.agent_id is not None and run.agent_id != matching.agent_id:
                continue
            reason = reason_of(source.last_event, record.dispatch_id)
            if matching.reason is not None and reason != matching.reason:
                continue
            if len(found) == limit:
                return found, True
            found.append(entry(record, run, reason, redriven.get(record.dispatch_id)))
        if len(rows) < PAGE:
            return found, False
        page = DeadLetterPage(
            thread_id=page.thread_id,
            since=page.since,
            until=page.until,
            after=(rows[-1].updated_at, rows[-1].dispatch_id),
            limit=PAGE,
        )
