"""The Run aggregate: one agent run on a thread, across all the dispatches that drive it."""

from __future__ import annotations

from typing import Any

from run_mailbox.domain.errors import InvalidArgument, InvalidTransition
from run_mailbox.domain.ids import run_aggregate_id
from run_mailbox.domain.model import MailboxAggregate
from run_mailbox.domain.permissions import Decision, DeliveryPath, ToolCallResume, ToolTicket
from run_mailbox.domain.run_events import (
    MailboxDecisionReceived,
    MailboxResumeFailed,
    RunCreated,
    RunErrored,
    RunEvent,
    RunFinished,
    RunStarted,
    RunSuspended,
    ThreadMessagesCheckpointed,
    ToolPermissionResolved,
)
from run_mailbox.domain.run_record import MOVES, TOOL_PERMISSION, RunRecord
from run_mailbox.domain.values import RunStatus, TerminationReason

__all__ = ["TOOL_PERMISSION", "Run", "RunRecord"]


class Run(MailboxAggregate[RunRecord]):
    TOPIC = "Run"  # its stable stored name (docs/events.md)
    record_type = RunRecord
    record_version = 3

    @staticmethod
    def upcast_record_v1_v2(record: dict[str, Any]) -> None:
        """Version 1 called a decision's ``pending_tool_calls`` ``pending_after`` (in snapshots)."""
        for decision in record.get("decisions", []):
            decision["pending_tool_calls"] = decision.pop("pending_after")

    @staticmethod
    def upcast_record_v2_v3(record: dict[str, Any]) -> None:
        """Version 3 added ``redrive_of``: no run recorded before it redrives anything."""
        record["redrive_of"] = None

    # The events are defined in run_events and named here, where the library registers them.
    Event = RunEvent  # type: ignore[assignment]
    RunCreated = RunCreated
    RunStarted = RunStarted
    RunFinished = RunFinished
    RunErrored = RunErrored
    RunSuspended = RunSuspended
    MailboxDecisionReceived = MailboxDecisionReceived
    ToolPermissionResolved = ToolPermissionResolved
    MailboxResumeFailed = MailboxResumeFailed
    ThreadMessagesCheckpointed = ThreadMessagesCheckpointed

    def __init__(self) -> None:
        pass

    @classmethod
    def create(
        cls, *, run_id: str, thread_id: str, agent_id: str, dispatch_id: str, now: int, redrive_of: str | None = None
    ) -> Run:
        return cls._create_at(
            cls.RunCreated,
            id=run_aggregate_id(run_id),
            run_id=run_id,
            thread_id=thread_id,
            agent_id=agent_id,
            dispatch_id=dispatch_id,
            redrive_of=redrive_of,
            now=now,
        )

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def _raise(self, event_class: Any, **facts: Any) -> None:
        self.trigger_event(event_class, run_id=self.record.run_id, thread_id=self.record.thread_id, **facts)

    def _require_move(self, target: RunStatus, action: str) -> None:
        if target not in MOVES[self.record.status]:
            raise InvalidTransition(f"cannot {action} run {self.run_id}: it is {self.record.status.value}")

    def start(self, *, dispatch_id: str, now: int) -> None:
        """Marks the run running for this dispatch; a no-op when it already is."""
        self._require_move(RunStatus.RUNNING, "start")
        if self.record.status is RunStatus.RUNNING and self.record.dispatch_id == dispatch_id:
            return
        self._raise(self.RunStarted, dispatch_id=dispatch_id, now=now)

    def finish(
        self, *, termination: TerminationReason, dispatch_id: str | None, now: int, error: str | None = None
    ) -> None:
        self._require_move(RunStatus.DONE, "finish")
        self._raise(self.RunFinished, dispatch_id=dispatch_id, termination=termination, error=error, now=now)

    def finish_if_open(
        self, *, termination: TerminationReason, dispatch_id: str | None, now: int, error: str | None = None
    ) -> bool:
        """Finishes the run unless it is already done; True when an event was raised."""
        if self.record.is_done:
            return False
        self.finish(termination=termination, dispatch_id=dispatch_id, now=now, error=error)
        return True

    def error(self, *, message: str, dispatch_id: str | None, attempt_count: int, now: int) -> None:
        self._require_move(RunStatus.DONE, "fail")
        self._raise(
            self.RunErrored,
            dispatch_id=dispatch_id,
            attempt_count=attempt_count,
            message=message,
            now=now,
        )

    # ------------------------------------------------------------------ permissions

    def suspend(self, *, dispatch_id: str, tickets: list[ToolTicket], now: int) -> None:
        if self.record.status is not RunStatus.RUNNING:
            raise InvalidTransition(
                f"cannot suspend run {self.run_id}: it is {self.record.status.value}, must be running "
                "(record_start first)"
            )
        if not tickets:
            raise InvalidArgument("tickets", tickets, "a suspension needs at least one ticket")
        ids = [t.tool_call_id for t in tickets]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("tickets", ids, "tool_call_id values must be unique")
        reused = sorted(set(ids) & self.record.decided_tool_calls())
        if reused:
            raise InvalidArgument("tickets", reused, "these tool calls were already decided in this run")
        self._raise(self.RunSuspended, dispatch_id=dispatch_id, tickets=tickets, now=now)

    def check_decision(self, tool_call_id: str, resume: ToolCallResume) -> Decision | None:
        """The earlier identical decision (a re-delivery), None for a new one, or an error."""
        earlier = self.record.decision(resume.decision_id)
        if earlier is not None:
            return earlier
        if self.record.status is not RunStatus.WAITING:
            raise InvalidTransition(f"cannot decide for run {self.run_id}: it is {self.record.status.value}")
        if tool_call_id not in {t.tool_call_id for t in self.record.tickets}:
            raise InvalidTransition(f"run {self.run_id} has no ticket for tool call {tool_call_id!r}")
        if tool_call_id in self.record.decided_tool_calls():
            raise InvalidTransition(f"tool call {tool_call_id!r} of run {self.run_id} is already decided")
        return None

    def decide(
        self,
        *,
        tool_call_id: str,
        resume: ToolCallResume,
        delivery_path: DeliveryPath,
        dispatch_id: str | None,
        resumes_run: bool,
        now: int,
    ) -> None:
        """Records a new decision (call ``check_decision`` first) and, when ``result.approved``
        is a boolean, the permission resolution."""
        facts: dict[str, Any] = {
            "dispatch_id": dispatch_id,
            "tool_call_id": tool_call_id,
            "decision_id": resume.decision_id,
            "action": resume.action,
            "result": resume.result,
            "reason": resume.reason,
            "resume_updated_at": resume.updated_at,
            "delivery_path": delivery_path,
            "now": now,
        }
        pending = [t.tool_call_id for t in self.record.pending_tickets() if t.tool_call_id != tool_call_id]
        self._raise(self.MailboxDecisionReceived, resumes_run=resumes_run, pending_tool_calls=pending, **facts)
        if resume.approved is not None:
            self._raise(self.ToolPermissionResolved, approved=resume.approved, **facts)

    def record_resume_failure(self, *, dispatch: Any, error: str, decisions: list[dict[str, Any]], now: int) -> None:
        self._raise(
            self.MailboxResumeFailed,
            dispatch_id=dispatch.dispatch_id,
            dispatch_epoch=dispatch.dispatch_epoch,
            attempt_count=dispatch.attempt_count,
            status=dispatch.status.value,
            reason="enqueue_failed",
            error=error,
            decisions=decisions,
            now=now,
        )

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self, *, first: int, message_ids: list[str], now: int) -> None:
        self._raise(
            self.ThreadMessagesCheckpointed,
            message_seq_start=first,
            message_seq_end=first + len(message_ids) - 1,
            message_count=len(message_ids),
            message_ids=message_ids,
            now=now,
        )
