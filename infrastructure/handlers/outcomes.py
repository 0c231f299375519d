"""Handlers of record_start, ack, nack and dead_letter: a worker reports an attempt's course."""

from __future__ import annotations

from run_mailbox.domain.commands import Ack, DeadLetter, Nack, RecordStart
from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.values import RunStatus, TerminationReason
from run_mailbox.infrastructure.handlers.fence import owner_fenced
from run_mailbox.infrastructure.unit_of_work import UnitOfWork


def record_start(cmd: RecordStart, uow: UnitOfWork) -> DispatchRecord:
    dispatch = uow.dispatch(cmd.dispatch_id)
    if owner_fenced(uow, dispatch, cmd.claim_token, "record_start"):
        return dispatch.record
    attempt = dispatch.record.attempt_count + 1
    instance_id = cmd.instance_id or f"{cmd.dispatch_id}/{attempt}"
    dispatch.record_start(claim_token=cmd.claim_token, instance_id=instance_id, now=uow.now)
    uow.run(dispatch.record.run_id).start(dispatch_id=cmd.dispatch_id, now=uow.now)
    return dispatch.record


def ack(cmd: Ack, uow: UnitOfWork) -> DispatchRecord:
    at = uow.now
    dispatch = uow.dispatch(cmd.dispatch_id)
    if owner_fenced(uow, dispatch, cmd.claim_token, "ack"):
        return dispatch.record
    dispatch.ack(claim_token=cmd.claim_token, now=at)
    uow.mailbox(dispatch.record.thread_id).release_claim(dispatch_id=cmd.dispatch_id, requeue_at=None, now=at)
    run = uow.run(dispatch.record.run_id)
    if run.record.status is not RunStatus.WAITING:
        run.finish_if_open(termination=TerminationReason.natural_end(), dispatch_id=cmd.dispatch_id, now=at)
    return dispatch.record


def nack(cmd: Nack, uow: UnitOfWork) -> DispatchRecord:
    at = uow.now
    dispatch = uow.dispatch(cmd.dispatch_id)
    if owner_fenced(uow, dispatch, cmd.claim_token, "nack"):
        return dispatch.record
    requeued = dispatch.nack(claim_token=cmd.claim_token, error=cmd.error, now=at, retry_at=cmd.retry_at)
    record = dispatch.record
    uow.mailbox(record.thread_id).release_claim(
        dispatch_id=cmd.dispatch_id, requeue_at=record.available_at if requeued else None, now=at
    )
    if not requeued:
        uow.run(record.run_id).finish_if_open(
            termination=TerminationReason.error(cmd.error), dispatch_id=cmd.dispatch_id, now=at, error=cmd.error
        )
    return record


def dead_letter(cmd: DeadLetter, uow: UnitOfWork) -> DispatchRecord:
    at = uow.now
    dispatch = uow.dispatch(cmd.dispatch_id)
    if owner_fenced(uow, dispatch, cmd.claim_token, "dead_letter"):
        return dispatch.record
    attempt_count = dispatch.record.attempt_count
    dispatch.dead_letter(claim_token=cmd.claim_token, error=cmd.error, now=at)
    uow.mailbox(dispatch.record.thread_id).release_claim(dispatch_id=cmd.dispatch_id, requeue_at=None, now=at)
    run = uow.run(dispatch.record.run_id)
    if not run.record.is_done:
        run.error(message=cmd.error, dispatch_id=cmd.dispatch_id, attempt_count=attempt_count, now=at)
    return dispatch.record
