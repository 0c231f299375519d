"""Immutable results of the commands that are not a single aggregate record."""

from __future__ import annotations

from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.values import Value


class InterruptResult(Value):
    thread_id: str
    new_dispatch_epoch: int
    superseded: list[DispatchRecord]
    active_dispatch: DispatchRecord | None

    @property
    def superseded_count(self) -> int:
        return len(self.superseded)


class DecisionOutcome(Value):
    """What a decision did: the same value is returned when the decision is delivered again."""

    run_id: str
    tool_call_id: str
    decision_id: str
    action: str
    approved: bool | None
    delivery_path: str
    pending_tool_calls: list[str]
    resume_dispatch_id: str | None


class CheckpointResult(Value):
    """The seq range a run checkpointed (the same value when the messages are committed again)."""

    thread_id: str
    run_id: str
    message_seq_start: int
    message_seq_end: int
    message_ids: list[str]


class RepairReport(Value):
    threads_checked: int
    runs_checked: int
    messages_checked: int
    ranges_checked: int
    repaired_ranges: list[CheckpointResult]


class Refusal(Value):
    """Why one item of a batch was refused: the error's type and message."""

    dispatch_id: str
    error: str
    message: str


class AckManyResult(Value):
    """What ``ack_many`` did: the dispatches it acked and those it refused, each in the order given."""

    acked: list[DispatchRecord]
    refused: list[Refusal]
