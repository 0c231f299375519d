"""Permission commands: suspend a run for a human, deliver decisions, resume, finish."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from run_mailbox.domain import policies
from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.errors import AlreadyExists, DecisionConflict, DuplicateDispatch, InvalidArgument, MailboxError
from run_mailbox.domain.permissions import DeliveryPath, ToolCallResume, ToolTicket
from run_mailbox.domain.run import Run, RunRecord
from run_mailbox.domain.values import DispatchStatus, TerminationReason, check_id, check_optional_id
from run_mailbox.infrastructure.command_base import new_id
from run_mailbox.infrastructure.dispatch_commands import DispatchCommands
from run_mailbox.infrastructure.results import DecisionOutcome
from run_mailbox.infrastructure.unit_of_work import UnitOfWork

_RUN = TypeAdapter(RunRecord)
_OUTCOME = TypeAdapter(DecisionOutcome)
_DELIVERY_PATHS = ("local_live", "remote_live", "durable_dispatch")
RUN_FINISHED_FIRST = "queued dispatch superseded: its run finished first"


class ResumeFailed(MailboxError):
    """The run could not be resumed: its resume dispatch was refused (MailboxResumeFailed)."""

    def __init__(self, run_id: str, error: str) -> None:
        self.run_id = run_id
        self.error = error
        super().__init__(f"could not queue the resume of run {run_id}: {error}")


def _parse(field: str, value: Any, model: type[Any]) -> Any:
    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidArgument(field, value, exc.errors()[0]["msg"]) from None


def _outcome(run: RunRecord, decision_id: str) -> DecisionOutcome:
    decision = run.decision(decision_id)
    assert decision is not None
    return DecisionOutcome(
        run_id=run.run_id,
        tool_call_id=decision.tool_call_id,
        decision_id=decision_id,
        action=decision.resume.action,
        approved=decision.resume.approved,
        delivery_path=decision.delivery_path,
        pending_tool_calls=decision.pending_after,
        resume_dispatch_id=decision.resume_dispatch_id,
    )


class PermissionCommands(DispatchCommands):
    def suspend(
        self,
        dispatch_id: str,
        *,
        claim_token: str,
        tickets: list[ToolTicket] | list[dict[str, Any]],
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> RunRecord:
        """The run waits for tool-permission decisions; its dispatch is acked (delivery done)."""
        check_id("dispatch_id", dispatch_id)
        check_id("claim_token", claim_token)
        if not isinstance(tickets, list):
            raise InvalidArgument("tickets", tickets, "must be a list of tickets")
        parsed = [_parse("tickets", t, ToolTicket) for t in tickets]
        for ticket in parsed:
            check_id("tickets.tool_call_id", ticket.tool_call_id)
            check_id("tickets.tool_name", ticket.tool_name)
        at = self._now(now)

        def body(uow: UnitOfWork) -> RunRecord:
            dispatch = uow.dispatch(dispatch_id)
            run = uow.run(dispatch.record.run_id)
            if self._owner_fenced(uow, dispatch, claim_token, "suspend", at):
                return run.record
            run.suspend(dispatch_id=dispatch_id, tickets=parsed, now=at)
            dispatch.ack(claim_token=claim_token, now=at)
            uow.mailbox(dispatch.record.thread_id, at).release_claim(dispatch_id=dispatch_id, requeue_at=None, now=at)
            return run.record

        params = {"dispatch_id": dispatch_id, "claim_token": claim_token, "tickets": parsed}
        return self._execute("suspend", params, body, _RUN, idempotency_key)

    def decide(
        self,
        run_id: str,
        tool_call_id: str,
        resume: ToolCallResume | dict[str, Any],
        *,
        delivery_path: DeliveryPath = "durable_dispatch",
        resume_dispatch_id: str | None = None,
        priority: int = policies.DEFAULT_PRIORITY,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> DecisionOutcome:
        """Delivers one decision (at least once). The last pending decision queues a new
        dispatch for the same run in the same transaction, so a worker resumes it."""
        check_id("run_id", run_id)
        check_id("tool_call_id", tool_call_id)
        decision = _parse("resume", resume, ToolCallResume)
        check_id("resume.decision_id", decision.decision_id)
        if delivery_path not in _DELIVERY_PATHS:
            raise InvalidArgument("delivery_path", delivery_path, f"must be one of {', '.join(_DELIVERY_PATHS)}")
        check_optional_id("resume_dispatch_id", resume_dispatch_id)
        at = self._now(now)
        new_dispatch_id = resume_dispatch_id or new_id()

        def body(uow: UnitOfWork) -> DecisionOutcome:
            run = uow.run(run_id)
            earlier = run.check_decision(tool_call_id, decision)
            if earlier is not None:
                if not earlier.same_content(tool_call_id, decision):
                    raise DecisionConflict(decision.decision_id)
                return _outcome(run.record, decision.decision_id)
            remaining = [t for t in run.record.pending_tickets() if t.tool_call_id != tool_call_id]
            dispatch_id = run.record.dispatch_id
            if not remaining:
                chosen = resume_dispatch_id is not None
                queued = self._queue_resume(uow, run, new_dispatch_id, chosen, priority, tool_call_id, decision, at)
                if queued is None:
                    return _failed_outcome(run.record, tool_call_id, decision, delivery_path)
                dispatch_id = queued.dispatch_id
            run.decide(
                tool_call_id=tool_call_id,
                resume=decision,
                delivery_path=delivery_path,
                dispatch_id=dispatch_id,
                resumes_run=not remaining,
                now=at,
            )
            return _outcome(run.record, decision.decision_id)

        params = {
            "run_id": run_id,
            "tool_call_id": tool_call_id,
            "resume": decision,
            "resume_dispatch_id": resume_dispatch_id,
            "priority": priority,
        }
        return self._execute("decide", params, body, _OUTCOME, idempotency_key)

    @staticmethod
    def _queue_resume(
        uow: UnitOfWork,
        run: Run,
        dispatch_id: str,
        chosen: bool,
        priority: int,
        tool_call_id: str,
        decision: ToolCallResume,
        at: int,
    ) -> DispatchRecord | None:
        """Queues the resume dispatch; on refusal records MailboxResumeFailed and returns None."""
        record = run.record
        mailbox = uow.mailbox(record.thread_id, at)
        try:
            if (chosen or uow.attempt > 0) and uow.find_dispatch(dispatch_id) is not None:
                raise DuplicateDispatch(dispatch_id)
            mailbox.admit(
                dispatch_id=dispatch_id, priority=priority, created_at=at, available_at=at, dedupe_key=None, now=at
            )
        except AlreadyExists as refused:
            attempted = DispatchRecord(
                dispatch_id=dispatch_id,
                thread_id=record.thread_id,
                run_id=record.run_id,
                priority=priority,
                dispatch_epoch=mailbox.epoch,
                available_at=at,
                max_attempts=policies.DEFAULT_MAX_ATTEMPTS,
                created_at=at,
                updated_at=at,
            )
            decisions = [
                {
                    "tool_call_id": d.tool_call_id,
                    "decision_id": d.resume.decision_id,
                    "action": d.resume.action,
                    "result": d.resume.result,
                    "reason": d.resume.reason,
                    "resume_updated_at": d.resume.updated_at,
                }
                for d in record.decisions
                if d.tool_call_id in {t.tool_call_id for t in record.tickets}
            ]
            decisions.append(
                {
                    "tool_call_id": tool_call_id,
                    "decision_id": decision.decision_id,
                    "action": decision.action,
                    "result": decision.result,
                    "reason": decision.reason,
                    "resume_updated_at": decision.updated_at,
                }
            )
            run.record_resume_failure(dispatch=attempted, error=str(refused), decisions=decisions, now=at)
            uow.commit_then_raise(ResumeFailed(record.run_id, str(refused)))
            return None
        dispatch = uow.add(
            Dispatch.enqueue(
                dispatch_id=dispatch_id,
                thread_id=record.thread_id,
                run_id=record.run_id,
                priority=priority,
                dedupe_key=None,
                max_attempts=policies.DEFAULT_MAX_ATTEMPTS,
                epoch=mailbox.epoch,
                available_at=at,
                now=at,
            )
        )
        uow.save_last(run)
        return dispatch.record  # type: ignore[no-any-return]

    def finish_run(
        self,
        run_id: str,
        termination: TerminationReason | dict[str, Any],
        *,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> RunRecord:
        """Ends the run (done is absorbing). An error termination records RunErrored; a
        queued dispatch of the run is superseded, a claimed one is left for its owner to ack."""
        check_id("run_id", run_id)
        reason = _parse("termination", termination, TerminationReason)
        if reason.type == "suspended":
            raise InvalidArgument("termination", reason.to_json(), "a suspension is recorded with suspend()")
        at = self._now(now)

        def body(uow: UnitOfWork) -> RunRecord:
            run = uow.run(run_id)
            dispatch = uow.find_dispatch(run.record.dispatch_id) if run.record.dispatch_id else None
            if reason.type == "error":
                attempts = dispatch.record.attempt_count if dispatch is not None else 0
                run.error(
                    message=str(reason.value or ""), dispatch_id=run.record.dispatch_id, attempt_count=attempts, now=at
                )
            else:
                run.finish(termination=reason, dispatch_id=run.record.dispatch_id, now=at)
            if dispatch is not None and dispatch.record.status is DispatchStatus.QUEUED:
                # Not RunCancelled: the run ended as the host said, not by a cancel (spec 128).
                dispatch.supersede(reason=RUN_FINISHED_FIRST, now=at)
                uow.mailbox(dispatch.record.thread_id, at).withdraw(dispatch_id=dispatch.dispatch_id, now=at)
            return run.record

        params = {"run_id": run_id, "termination": reason}
        return self._execute("finish_run", params, body, _RUN, idempotency_key)


def _failed_outcome(run: RunRecord, tool_call_id: str, decision: ToolCallResume, delivery_path: str) -> DecisionOutcome:
    return DecisionOutcome(
        run_id=run.run_id,
        tool_call_id=tool_call_id,
        decision_id=decision.decision_id,
        action=decision.action,
        approved=decision.approved,
        delivery_path=delivery_path,
        pending_tool_calls=[t.tool_call_id for t in run.pending_tickets()],
        resume_dispatch_id=None,
    )
