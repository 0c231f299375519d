"""Handlers of submit, submit_many, cancel and interrupt."""

from __future__ import annotations

from run_mailbox.domain.commands import Cancel, Interrupt, Submit, SubmitMany
from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.errors import DuplicateDispatch, DuplicateRun, MailboxError
from run_mailbox.domain.ids import dispatch_aggregate_id, mailbox_aggregate_id, run_aggregate_id
from run_mailbox.domain.mailbox import Admission, ThreadMailbox
from run_mailbox.domain.reasons import SUPERSEDED_BY_INTERRUPT
from run_mailbox.domain.results import InterruptResult
from run_mailbox.domain.run import Run
from run_mailbox.domain.values import TerminationReason
from run_mailbox.infrastructure.unit_of_work import UnitOfWork


def submit(cmd: Submit, uow: UnitOfWork) -> DispatchRecord:
    # The first try does not read a mailbox this service has not cached: it presumes the thread new
    # (decision 0013); if the thread exists after all, the write is refused and the retry reads it.
    if uow.attempt == 0:
        uow.presume_new_mailbox(cmd.thread_id)
    return enqueue(cmd, uow, "dispatch")


def submit_many(cmd: SubmitMany, uow: UnitOfWork) -> list[DispatchRecord]:
    uow.preload_mailboxes([run.thread_id for run in cmd.runs])
    records = []
    for i, run in enumerate(cmd.runs):
        try:
            records.append(enqueue(run, uow, f"dispatch {i}"))
        except MailboxError as refused:
            refused.args = (f"runs[{i}]: {refused}",)
            raise
    return records


def enqueue(cmd: Submit, uow: UnitOfWork, purpose: str, *, redrive_of: str | None = None) -> DispatchRecord:
    """Queues one run: its dispatch (with a generated id for ``purpose`` unless given) and the run
    (which redrives the dead letter ``redrive_of``, if given)."""
    at = uow.now
    dispatch_id = cmd.dispatch_id or uow.ids(purpose)
    # Creating, not reading: the first try lets the store refuse an existing run or dispatch
    # id (a unique key); only a retry after such a conflict looks them up, with the mailbox, in one read.
    if uow.attempt > 0:
        uow.preload_kinds(
            [
                ([run_aggregate_id(cmd.run_id)], Run),
                ([dispatch_aggregate_id(dispatch_id)], Dispatch),
                ([mailbox_aggregate_id(cmd.thread_id)], ThreadMailbox),
            ]
        )
    if uow.attempt > 0 and uow.find_run(cmd.run_id) is not None:
        raise DuplicateRun(cmd.run_id)
    if uow.attempt > 0 and uow.find_dispatch(dispatch_id) is not None:
        raise DuplicateDispatch(dispatch_id)
    due = at if cmd.available_at is None else cmd.available_at
    admission = Admission.of(
        dispatch_id, priority=cmd.priority, created_at=at, available_at=due, dedupe_key=cmd.dedupe_key
    )
    mailbox = uow.find_mailbox(cmd.thread_id)
    if mailbox is None:  # a new thread: its mailbox opens with this dispatch, in one event
        mailbox = uow.add(ThreadMailbox.open_admitting(thread_id=cmd.thread_id, admission=admission, now=at))
    else:
        mailbox.admit(admission, now=at)
    dispatch = uow.add(
        Dispatch.enqueue(
            dispatch_id=dispatch_id,
            thread_id=cmd.thread_id,
            run_id=cmd.run_id,
            priority=cmd.priority,
            dedupe_key=cmd.dedupe_key,
            max_attempts=cmd.max_attempts,
            epoch=mailbox.epoch,
            available_at=due,
            now=at,
        )
    )
    uow.add(
        Run.create(
            run_id=cmd.run_id,
            thread_id=cmd.thread_id,
            agent_id=cmd.agent_id,
            dispatch_id=dispatch_id,
            now=at,
            redrive_of=redrive_of,
        )
    )
    return dispatch.record


def cancel(cmd: Cancel, uow: UnitOfWork) -> DispatchRecord:
    dispatch = uow.dispatch(cmd.dispatch_id)
    dispatch.cancel(now=uow.now)
    uow.mailbox(dispatch.record.thread_id).withdraw(dispatch_id=cmd.dispatch_id, now=uow.now)
    uow.run(dispatch.record.run_id).finish_if_open(
        termination=TerminationReason.cancelled(), dispatch_id=cmd.dispatch_id, now=uow.now
    )
    return dispatch.record


def interrupt(cmd: Interrupt, uow: UnitOfWork) -> InterruptResult:
    at = uow.now
    mailbox = uow.mailbox(cmd.thread_id)
    old_epoch = mailbox.epoch
    new_epoch, superseded_ids, active_id = mailbox.advance_epoch(now=at)
    superseded = []
    for dispatch_id in superseded_ids:
        dispatch = uow.dispatch(dispatch_id)
        dispatch.supersede(reason=SUPERSEDED_BY_INTERRUPT, now=at)
        uow.run(dispatch.record.run_id).finish_if_open(
            termination=TerminationReason.cancelled(), dispatch_id=dispatch_id, now=at
        )
        superseded.append(dispatch.record)
    active = None
    if active_id is not None:
        active_dispatch = uow.dispatch(active_id)
        if active_dispatch.record.dispatch_epoch == old_epoch:
            # Already-interrupted claims are not interrupted twice (spec Z11).
            active_dispatch.interrupt(new_epoch=new_epoch, now=at)
        active = active_dispatch.record
    return InterruptResult(
        thread_id=cmd.thread_id, new_dispatch_epoch=new_epoch, superseded=superseded, active_dispatch=active
    )
