"""Tool-permission tickets and the decisions a human (or policy) delivers for them."""

from __future__ import annotations

from typing import Literal

from pydantic import JsonValue

from run_mailbox.domain.values import Millis, Value

DeliveryPath = Literal["local_live", "remote_live", "durable_dispatch"]


class ToolTicket(Value):
    """One suspended tool call waiting for a decision."""

    tool_call_id: str
    tool_name: str
    arguments: JsonValue = None


class ToolCallResume(Value):
    """A decision for a suspended tool call, in the upstream's shape."""

    decision_id: str
    action: Literal["resume", "cancel"]
    result: JsonValue = None
    reason: str | None = None
    updated_at: Millis = 0

    @property
    def approved(self) -> bool | None:
        """``result.approved`` when it is a JSON boolean, else None."""
        if isinstance(self.result, dict):
            value = self.result.get("approved")
            if isinstance(value, bool):
                return value
        return None


class Decision(Value):
    """A decision the run received: which ticket, what was decided, how it arrived."""

    tool_call_id: str
    resume: ToolCallResume
    delivery_path: DeliveryPath
    decided_at: Millis
    resume_dispatch_id: str | None = None
    """The dispatch queued to resume the run, when this decision was the last one pending."""
    pending_tool_calls: list[str] = []
    """The run's tool calls still undecided right after this decision."""

    def same_content(self, tool_call_id: str, resume: ToolCallResume) -> bool:
        """Same decision delivered again (any path): the content matches exactly."""
        return self.tool_call_id == tool_call_id and self.resume == resume
