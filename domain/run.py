"""The Run aggregate: one agent run on a thread, across all the dispatches that drive it."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import JsonValue

from run_mailbox.domain.errors import InvalidArgument, InvalidTransition
from run_mailbox.domain.ids import run_aggregate_id
from run_mailbox.domain.messages import MessageSeqRange
from run_mailbox.domain.model import Created, MailboxAggregate
from run_mailbox.domain.permissions import Decision, DeliveryPath, ToolCallResume, ToolTicket
from run_mailbox.domain.values import Millis, RunStatus, TerminationReason, Value

TOOL_PERMISSION = "tool_permission"

# Allowed moves (spec payloads section 6); a move to the same status is allowed.
_MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.CREATED: frozenset({RunStatus.CREATED, RunStatus.RUNNING, RunStatus.DONE}),
    RunStatus.RUNNING: frozenset({RunStatus.RUNNING, RunStatus.WAITING, RunStatus.DONE}),
    RunStatus.WAITING: frozenset({RunStatus.WAITING, RunStatus.RUNNING, RunStatus.DONE}),
    RunStatus.DONE: frozenset(),
}


class RunRecord(Value):
    run_id: str
    thread_id: str
    agent_id: str
    status: RunStatus = RunStatus.CREATED
    dispatch_id: str | None = None
    termination: TerminationReason | None = None
    error: str | None = None
    created_at: Millis
    updated_at: Millis
    started_at: Millis | None = None
    finished_at: Millis | None = None
    waiting_reason: str | None = None
    tickets: list[ToolTicket] = []
    decisions: list[Decision] = []
    checkpoints: list[MessageSeqRange] = []

    @property
    def is_done(self) -> bool:
        return self.status is RunStatus.DONE

    def decision(self, decision_id: str) -> Decision | None:
        return next((d for d in self.decisions if d.resume.decision_id == decision_id), None)

    def decided_tool_calls(self) -> set[str]:
        return {d.tool_call_id for d in self.decisions}

    def pending_tickets(self) -> list[ToolTicket]:
        decided = self.decided_tool_calls()
        return [t for t in self.tickets if t.tool_call_id not in decided]


class Run(MailboxAggregate[RunRecord]):
    TOPIC = "Run"  # its stable stored name (docs/events.md)
    record_type = RunRecord
    record_version = 2

    @staticmethod
    def upcast_record_v1_v2(record: dict[str, Any]) -> None:
        """Version 1 called a decision's ``pending_tool_calls`` ``pending_after`` (in snapshots)."""
        for decision in record.get("decisions", []):
            decision["pending_tool_calls"] = decision.pop("pending_after")

    class Event(MailboxAggregate.Event):
        """Every run event names its run and thread, so it can be read on its own."""

        run_id: str
        thread_id: str
        now: int

    class RunCreated(Event, Created):
        TOPIC = "Run.RunCreated"
        agent_id: str
        dispatch_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.record = RunRecord(
                run_id=self.run_id,
                thread_id=self.thread_id,
                agent_id=self.agent_id,
                dispatch_id=self.dispatch_id,
                created_at=self.now,
                updated_at=self.now,
            )

    class RunStarted(Event):
        TOPIC = "Run.RunStarted"
        dispatch_id: str

        def next_record(self, record: Any) -> Any:
            return record.model_copy(
                update={
                    "status": RunStatus.RUNNING,
                    "waiting_reason": None,
                    "dispatch_id": self.dispatch_id,
                    "started_at": record.started_at if record.started_at is not None else self.now,
                    "updated_at": self.now,
                }
            )

    class RunFinished(Event):
        """The run is done for a reason the mailbox decided (ack, cancel, supersede, exhaustion)."""

        TOPIC = "Run.RunFinished"

        dispatch_id: str | None
        termination: TerminationReason
        error: str | None = None

        def next_record(self, record: Any) -> Any:
            return _finished(record, self.termination, self.error, self.now)

    class RunErrored(Event):
        """The host reported a permanent failure; payload is the upstream RunFinish shape."""

        TOPIC = "Run.RunErrored"

        upstream: ClassVar[bool] = True
        dispatch_id: str | None
        attempt_count: int
        message: str

        def next_record(self, record: Any) -> Any:
            return _finished(record, TerminationReason.error(self.message), self.message, self.now)

    class RunSuspended(Event):
        """The run waits for tool-permission decisions; its dispatch was acked."""

        TOPIC = "Run.RunSuspended"

        dispatch_id: str
        tickets: list[ToolTicket]

        def next_record(self, record: Any) -> Any:
            return record.model_copy(
                update={
                    "status": RunStatus.WAITING,
                    "waiting_reason": TOOL_PERMISSION,
                    "tickets": self.tickets,
                    "updated_at": self.now,
                }
            )

    class MailboxDecisionReceived(Event):
        """A decision was accepted; ``dispatch_id`` names the resume dispatch once the last
        pending ticket is decided (spec Z12), else the run's current dispatch."""

        TOPIC = "Run.MailboxDecisionReceived"

        upstream: ClassVar[bool] = True
        dispatch_id: str | None
        tool_call_id: str
        decision_id: str
        action: Literal["resume", "cancel"]
        result: JsonValue = None
        reason: str | None = None
        resume_updated_at: int
        delivery_path: DeliveryPath
        resumes_run: bool = False
        pending_tool_calls: list[str] = []

        def next_record(self, record: Any) -> Any:
            decision = Decision(
                resume_dispatch_id=self.dispatch_id if self.resumes_run else None,
                pending_tool_calls=self.pending_tool_calls,
                tool_call_id=self.tool_call_id,
                resume=ToolCallResume(
                    decision_id=self.decision_id,
                    action=self.action,
                    result=self.result,
                    reason=self.reason,
                    updated_at=self.resume_updated_at,
                ),
                delivery_path=self.delivery_path,
                decided_at=self.now,
            )
            return record.model_copy(
                update={
                    "decisions": [*record.decisions, decision],
                    "dispatch_id": self.dispatch_id,
                    "updated_at": self.now,
                }
            )

    class ToolPermissionResolved(Event):
        """Follows MailboxDecisionReceived when ``result.approved`` is a JSON boolean."""

        TOPIC = "Run.ToolPermissionResolved"

        upstream: ClassVar[bool] = True
        dispatch_id: str | None
        tool_call_id: str
        decision_id: str
        action: str
        approved: bool
        result: JsonValue = None
        reason: str | None = None
        resume_updated_at: int
        delivery_path: DeliveryPath

    class MailboxResumeFailed(Event):
        """The resume dispatch could not be queued; the decision was not accepted."""

        TOPIC = "Run.MailboxResumeFailed"

        upstream: ClassVar[bool] = True
        dispatch_id: str
        dispatch_epoch: int
        attempt_count: int
        status: str
        reason: str
        error: str
        decisions: list[dict[str, Any]]

    class ThreadMessagesCheckpointed(Event):
        TOPIC = "Run.ThreadMessagesCheckpointed"
        upstream: ClassVar[bool] = True
        message_seq_start: int
        message_seq_end: int
        message_count: int
        message_ids: list[str]

        def next_record(self, record: Any) -> Any:
            span = MessageSeqRange(first=self.message_seq_start, last=self.message_seq_end)
            spans = list(record.checkpoints)
            if spans and spans[-1].last + 1 == span.first:
                # Adjacent commits of one run read as one range: a run that checkpoints
                # message by message keeps a record of constant size.
                span = MessageSeqRange(first=spans.pop().first, last=span.last)
            return record.model_copy(update={"checkpoints": [*spans, span], "updated_at": self.now})

    def __init__(self) -> None:
        pass

    @classmethod
    def create(cls, *, run_id: str, thread_id: str, agent_id: str, dispatch_id: str, now: int) -> Run:
        return cls._create_at(
            cls.RunCreated,
            id=run_aggregate_id(run_id),
            run_id=run_id,
            thread_id=thread_id,
            agent_id=agent_id,
            dispatch_id=dispatch_id,
            now=now,
        )

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def _raise(self, event_class: Any, **facts: Any) -> None:
        self.trigger_event(event_class, run_id=self.record.run_id, thread_id=self.record.thread_id, **facts)

    def _require_move(self, target: RunStatus, action: str) -> None:
        if target not in _MOVES[self.record.status]:
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


def _finished(record: RunRecord, termination: TerminationReason, error: str | None, now: int) -> RunRecord:
    return record.model_copy(
        update={
            "status": RunStatus.DONE,
            "termination": termination,
            "error": error,
            "finished_at": now,
            "updated_at": now,
        }
    )
