"""Handlers of record_start, ack, ack_many, nack and dead_letter: a worker reports an attempt's course."""

from __future__ import annotations

from run_mailbox.domain.commands import Ack, AckMany, DeadLetter, Nack, RecordStart
from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.errors import DispatchSuperseded, MailboxError
from run_mailbox.domain.reasons import FENCED_AT
from run_mailbox.domain.results import AckManyResult, Refusal
from run_mailbox.domain.values import RunStatus, TerminationReason
from run_mailbox.infrastructure.handlers.fence import owner_fenced
from run_mailbox.infrastructure.unit_of_work import UnitOfWork


def record_start(cmd: RecordStart, uow: UnitOfWork) -> DispatchRecord:
    dispatch = uow.dispatch(cmd.dispatch_id)
    if owner_fenced(uow, dispatch, cmd.claim_token, "record_start"):
        return dispatch.record
    return start(uow, dispatch, cmd.claim_token, cmd.instance_id)


def start(uow: UnitOfWork, dispatch: Dispatch, claim_token: str, instance_id: str | None) -> DispatchRecord:
    """Records the start of the dispatch for the owner of ``claim_token`` (the domain refuses anyone
    else); the runtime instance is ``<dispatch_id>/<attempt>`` unless named."""
    record = dispatch.record
    instance = instance_id or f"{record.dispatch_id}/{record.attempt_count + 1}"
    dispatch.record_start(claim_token=claim_token, instance_id=instance, now=uow.now)
    uow.run(record.run_id).start(dispatch_id=record.dispatch_id, now=uow.now)
    return dispatch.record


def ack(cmd: Ack, uow: UnitOfWork) -> DispatchRecord:
    dispatch = uow.dispatch(cmd.dispatch_id)
    if owner_fenced(uow, dispatch, cmd.claim_token, "ack"):
        return dispatch.record
    return _acked(uow, dispatch, cmd.claim_token)


def ack_many(cmd: AckMany, uow: UnitOfWork) -> AckManyResult:
    acked, refused = [], []
    for item in cmd.acks:
        try:
            dispatch = uow.dispatch(item.dispatch_id)
            if owner_fenced(uow, dispatch, item.claim_token, "ack", defer=False):
                raise DispatchSuperseded(item.dispatch_id, FENCED_AT["ack"])
            acked.append(_acked(uow, dispatch, item.claim_token))
        except MailboxError as error:
            refused.append(Refusal(dispatch_id=item.dispatch_id, error=type(error).__name__, message=str(error)))
    return AckManyResult(acked=acked, refused=refused)


def _acked(uow: UnitOfWork, dispatch: Dispatch, claim_token: str) -> DispatchRecord:
    at = uow.now
    dispatch.ack(claim_token=claim_token, now=at)
    uow.mailbox(dispatch.record.thread_id).release_claim(dispatch_id=dispatch.dispatch_id, requeue_at=None, now=at)
    run = uow.run(dispatch.record.run_id)
    if run.record.status is not RunStatus.WAITING:
        run.finish_if_open(termination=TerminationReason.natural_end(), dispatch_id=dispatch.dispatch_id, now=at)
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
