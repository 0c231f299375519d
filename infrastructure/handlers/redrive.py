"""Handlers of redrive and redrive_many: queue a dead letter's work again as a new run (decision 0012).

A dead-lettered dispatch and its run are final, so neither is touched: the redrive is a new run on
the same thread, for the same agent, whose id is derived from the dead letter's id (a second redrive
of it collides with the first in the store) and whose ``RunCreated`` names the dead letter.
"""

from __future__ import annotations

from uuid import UUID

from run_mailbox.domain.commands import Redrive, RedriveMany, Submit
from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.errors import AlreadyRedriven, DispatchNotFound, DuplicateRun, InvalidTransition, MailboxError
from run_mailbox.domain.ids import redrive_run_id
from run_mailbox.domain.results import DeadLetterEntry, RedriveManyResult, RedriveResult, Refusal
from run_mailbox.domain.run_record import RunRecord
from run_mailbox.domain.values import DispatchStatus
from run_mailbox.infrastructure.dead_letters import entry, find_dead_letters, reason_of
from run_mailbox.infrastructure.handlers.dispatching import enqueue
from run_mailbox.infrastructure.persistence.rows import MailboxTables
from run_mailbox.infrastructure.unit_of_work import UnitOfWork


class UnitSource:
    """The dead letters' records as a command reads them: through its unit of work, which then forgets
    them (a redrive changes neither the dead letter nor its run, so its commit does not depend on them)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.tables: MailboxTables = uow.tables
        self.records: dict[str, DispatchRecord] = {}

    def dispatches(self, dispatch_ids: list[str]) -> dict[str, DispatchRecord]:
        self.uow.preload_dispatches(dispatch_ids)
        for dispatch_id in dispatch_ids:
            if (dispatch := self.uow.find_dispatch(dispatch_id)) is not None:
                self.records[dispatch_id] = dispatch.record
                self.uow.unread(dispatch)
        return {d: self.records[d] for d in dispatch_ids if d in self.records}

    def runs(self, run_ids: list[str]) -> dict[str, RunRecord]:
        self.uow.preload_runs(run_ids)
        found = {}
        for run_id in run_ids:
            if (run := self.uow.find_run(run_id)) is not None:
                found[run_id] = run.record
                self.uow.unread(run)
        return found

    def last_event(self, aggregate_id: UUID) -> object:
        return self.uow.last_event(aggregate_id)


def redrive(cmd: Redrive, uow: UnitOfWork) -> RedriveResult:
    source = UnitSource(uow)
    record = source.dispatches([cmd.dispatch_id]).get(cmd.dispatch_id)
    if record is None:
        raise DispatchNotFound(cmd.dispatch_id)
    if record.status is not DispatchStatus.DEAD_LETTER:
        raise InvalidTransition(
            f"cannot redrive dispatch {cmd.dispatch_id}: it is {record.status.value}, must be dead_letter"
        )
    run_id = redrive_run_id(cmd.dispatch_id)
    if uow.find_run(run_id) is not None:
        raise AlreadyRedriven(cmd.dispatch_id, run_id)
    run = source.runs([record.run_id])[record.run_id]
    dead = entry(record, run, reason_of(uow.last_event, cmd.dispatch_id), None)
    return queue_again(uow, dead, record, cmd.priority, "dispatch")


def redrive_many(cmd: RedriveMany, uow: UnitOfWork) -> RedriveManyResult:
    source = UnitSource(uow)
    found, more = find_dead_letters(source, cmd.filter(), limit=cmd.limit)
    uow.preload_mailboxes([dead.thread_id for dead in found])
    redriven, refused = [], []
    for dead in found:
        record = source.records[dead.dispatch_id]
        try:
            redriven.append(queue_again(uow, dead, record, cmd.priority, f"redrive {dead.dispatch_id}"))
        except MailboxError as error:  # refused before any event of its own was raised
            refused.append(Refusal(dispatch_id=dead.dispatch_id, error=type(error).__name__, message=str(error)))
    return RedriveManyResult(redriven=redriven, refused=refused, more=more)


def queue_again(
    uow: UnitOfWork, dead: DeadLetterEntry, record: DispatchRecord, priority: int | None, purpose: str
) -> RedriveResult:
    """Queues the new run that redrives ``dead`` (``record``: the dead letter's dispatch)."""
    run_id = redrive_run_id(dead.dispatch_id)
    submit = Submit(
        dead.thread_id,
        run_id,
        agent_id=dead.agent_id,
        priority=record.priority if priority is None else priority,
        dedupe_key=record.dedupe_key,
        max_attempts=record.max_attempts,
    )
    try:
        dispatch = enqueue(submit, uow, purpose, redrive_of=dead.dispatch_id)
    except DuplicateRun:  # a concurrent redrive of the same dead letter committed first
        raise AlreadyRedriven(dead.dispatch_id, run_id) from None
    return RedriveResult(dead_letter=dead, run_id=run_id, dispatch=dispatch)
