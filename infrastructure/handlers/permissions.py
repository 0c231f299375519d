"""Handlers of suspend, decide and finish_run: the tool-permission cycle of a run."""

from __future__ import annotations

from typing import Any

from run_mailbox.domain import policies
from run_mailbox.domain.commands import Decide, FinishRun, Suspend
from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.errors import AlreadyExists, DecisionConflict, DuplicateDispatch, ResumeFailed
from run_mailbox.domain.mailbox import Admission
from run_mailbox.domain.permissions import ToolCallResume
from run_mailbox.domain.reasons import RUN_FINISHED_FIRST
from run_mailbox.domain.results import DecisionOutcome
from run_mailbox.domain.run import Run, RunRecord
from run_mailbox.domain.values import DispatchStatus
from run_mailbox.infrastructure.handlers.fence import owner_fenced
from run_mailbox.infrastructure.unit_of_work import UnitOfWork


def suspend(cmd: Suspend, uow: UnitOfWork) -> RunRecord:
    at = uow.now
    dispatch = uow.dispatch(cmd.dispatch_id)
    run = uow.run(dispatch.record.run_id)
    if owner_fenced(uow, dispatch, cmd.claim_token, "suspend"):
        return run.record
    run.suspend(dispatch_id=cmd.dispatch_id, tickets=cmd.tickets, now=at)
    dispatch.ack(claim_token=cmd.claim_token, now=at)
    uow.mailbox(dispatch.record.thread_id).release_claim(dispatch_id=cmd.dispatch_id, requeue_at=None, now=at)
    return run.record


def decide(cmd: Decide, uow: UnitOfWork) -> DecisionOutcome:
    run = uow.run(cmd.run_id)
    earlier = run.check_decision(cmd.tool_call_id, cmd.resume)
    if earlier is not None:
        if not earlier.same_content(cmd.tool_call_id, cmd.resume):
            raise DecisionConflict(cmd.resume.decision_id)
        return outcome_of(run.record, cmd.resume.decision_id)
    remaining = [t for t in run.record.pending_tickets() if t.tool_call_id != cmd.tool_call_id]
    resumes = not remaining
    dispatch_id = run.record.dispatch_id
    # Read before the decision is recorded: the decision points the run at its resume dispatch.
    priority = _priority(uow, run.record, cmd)
    if resumes:
        dispatch_id = cmd.resume_dispatch_id or uow.ids("resume dispatch")
        if not _can_queue_resume(uow, run, cmd, dispatch_id):
            return _failed_outcome(run.record, cmd)
    # The decision is recorded before the resume dispatch it causes (the log reads cause, then effect).
    run.decide(
        tool_call_id=cmd.tool_call_id,
        resume=cmd.resume,
        delivery_path=cmd.delivery_path,
        dispatch_id=dispatch_id,
        resumes_run=resumes,
        now=uow.now,
    )
    if resumes:
        assert dispatch_id is not None
        _queue_resume(uow, run.record, dispatch_id, priority)
    return outcome_of(run.record, cmd.resume.decision_id)


def _priority(uow: UnitOfWork, run: RunRecord, cmd: Decide) -> int:
    """The resume's priority: the caller's, else that of the run's own dispatch."""
    if cmd.priority is not None:
        return cmd.priority
    current = uow.find_dispatch(run.dispatch_id) if run.dispatch_id else None
    return current.record.priority if current is not None else policies.DEFAULT_PRIORITY


def _can_queue_resume(uow: UnitOfWork, run: Run, cmd: Decide, dispatch_id: str) -> bool:
    """Admits the resume dispatch to the thread's mailbox; on refusal records MailboxResumeFailed
    and refuses the command with ResumeFailed (saved, then raised)."""
    record = run.record
    mailbox = uow.mailbox(record.thread_id)
    try:
        if (cmd.resume_dispatch_id is not None or uow.attempt > 0) and uow.find_dispatch(dispatch_id) is not None:
            raise DuplicateDispatch(dispatch_id)
        priority = _priority(uow, record, cmd)
        mailbox.admit(
            Admission.of(dispatch_id, priority=priority, created_at=uow.now, available_at=uow.now), now=uow.now
        )
    except AlreadyExists as refused:
        attempted = DispatchRecord(
            dispatch_id=dispatch_id,
            thread_id=record.thread_id,
            run_id=record.run_id,
            priority=_priority(uow, record, cmd),
            dispatch_epoch=mailbox.epoch,
            available_at=uow.now,
            max_attempts=policies.DEFAULT_MAX_ATTEMPTS,
            created_at=uow.now,
            updated_at=uow.now,
        )
        ticketed = {t.tool_call_id for t in record.tickets}
        decisions = [_decision_json(d.tool_call_id, d.resume) for d in record.decisions if d.tool_call_id in ticketed]
        decisions.append(_decision_json(cmd.tool_call_id, cmd.resume))
        run.record_resume_failure(dispatch=attempted, error=str(refused), decisions=decisions, now=uow.now)
        uow.commit_then_raise(ResumeFailed(record.run_id, str(refused)))
        return False
    return True


def _queue_resume(uow: UnitOfWork, run: RunRecord, dispatch_id: str, priority: int) -> None:
    uow.add(
        Dispatch.enqueue(
            dispatch_id=dispatch_id,
            thread_id=run.thread_id,
            run_id=run.run_id,
            priority=priority,
            dedupe_key=None,
            max_attempts=policies.DEFAULT_MAX_ATTEMPTS,
            epoch=uow.mailbox(run.thread_id).epoch,
            available_at=uow.now,
            now=uow.now,
        )
    )


def _decision_json(tool_call_id: str, resume: ToolCallResume) -> dict[str, Any]:
    return {
        "tool_call_id": tool_call_id,
        "decision_id": resume.decision_id,
        "action": resume.action,
        "result": resume.result,
        "reason": resume.reason,
        "resume_updated_at": resume.updated_at,
    }


def outcome_of(run: RunRecord, decision_id: str) -> DecisionOutcome:
    decision = run.decision(decision_id)
    assert decision is not None
    return DecisionOutcome(
        run_id=run.run_id,
        tool_call_id=decision.tool_call_id,
        decision_id=decision_id,
        action=decision.resume.action,
        approved=decision.resume.approved,
        delivery_path=decision.delivery_path,
        pending_tool_calls=decision.pending_tool_calls,
        resume_dispatch_id=decision.resume_dispatch_id,
    )


def _failed_outcome(run: RunRecord, cmd: Decide) -> DecisionOutcome:
    return DecisionOutcome(
        run_id=run.run_id,
        tool_call_id=cmd.tool_call_id,
        decision_id=cmd.resume.decision_id,
        action=cmd.resume.action,
        approved=cmd.resume.approved,
        delivery_path=cmd.delivery_path,
        pending_tool_calls=[t.tool_call_id for t in run.pending_tickets()],
        resume_dispatch_id=None,
    )


def finish_run(cmd: FinishRun, uow: UnitOfWork) -> RunRecord:
    at = uow.now
    reason = cmd.termination
    run = uow.run(cmd.run_id)
    dispatch = uow.find_dispatch(run.record.dispatch_id) if run.record.dispatch_id else None
    if reason.type == "error":
        attempts = dispatch.record.attempt_count if dispatch is not None else 0
        run.error(message=str(reason.value or ""), dispatch_id=run.record.dispatch_id, attempt_count=attempts, now=at)
    else:
        run.finish(termination=reason, dispatch_id=run.record.dispatch_id, now=at)
    if dispatch is not None and dispatch.record.status is DispatchStatus.QUEUED:
        # Not RunCancelled: the run ended as the host said, not by a cancel (spec 128).
        dispatch.supersede(reason=RUN_FINISHED_FIRST, now=at)
        uow.mailbox(dispatch.record.thread_id).withdraw(dispatch_id=dispatch.dispatch_id, now=at)
    return run.record
