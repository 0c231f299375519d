"""The events of the Run aggregate. Each names its run and thread, so it can be read on its own."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import JsonValue

from run_mailbox.domain.messages import MessageSeqRange
from run_mailbox.domain.model import Created, MailboxAggregate, drop_originator
from run_mailbox.domain.permissions import Decision, DeliveryPath, ToolCallResume, ToolTicket
from run_mailbox.domain.run_record import TOOL_PERMISSION, RunRecord, finished
from run_mailbox.domain.values import RunStatus, TerminationReason


class RunEvent(MailboxAggregate.Event):
    """Every run event names its run and thread, so it can be read on its own."""

    run_id: str
    thread_id: str
    now: int


class RunCreated(RunEvent, Created):
    TOPIC = "Run.RunCreated"
    class_version = 3
    agent_id: str
    dispatch_id: str
    redrive_of: str | None = None
    """The dead-lettered dispatch this run redrives (``redrive``), else None."""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 2 added ``redrive_of``: no run created before it redrives anything."""
        state["redrive_of"] = None

    @staticmethod
    def upcast_v2_v3(state: dict[str, Any]) -> None:
        """The originator's id and version are left to the stored row."""
        drop_originator(state)

    def apply(self, aggregate: Any) -> None:
        aggregate.record = RunRecord(
            run_id=self.run_id,
            thread_id=self.thread_id,
            agent_id=self.agent_id,
            dispatch_id=self.dispatch_id,
            created_at=self.now,
            updated_at=self.now,
            redrive_of=self.redrive_of,
        )


class RunStarted(RunEvent):
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


class RunFinished(RunEvent):
    """The run is done for a reason the mailbox decided (ack, cancel, supersede, exhaustion)."""

    TOPIC = "Run.RunFinished"

    dispatch_id: str | None
    termination: TerminationReason
    error: str | None = None

    def next_record(self, record: Any) -> Any:
        return finished(record, self.termination, self.error, self.now)


class RunErrored(RunEvent):
    """The host reported a permanent failure; payload is the upstream RunFinish shape."""

    TOPIC = "Run.RunErrored"

    upstream: ClassVar[bool] = True
    dispatch_id: str | None
    attempt_count: int
    message: str

    def next_record(self, record: Any) -> Any:
        return finished(record, TerminationReason.error(self.message), self.message, self.now)


class RunSuspended(RunEvent):
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


class MailboxDecisionReceived(RunEvent):
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


class ToolPermissionResolved(RunEvent):
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


class MailboxResumeFailed(RunEvent):
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


class ThreadMessagesCheckpointed(RunEvent):
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
