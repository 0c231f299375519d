"""Renders domain events as the upstream's canonical event envelope (spec payloads.md).

``render`` is pure: one stored domain event and its log position in, one envelope out (or
None for the thread mailbox's own bookkeeping events, which are not facts a host reads).
Upstream kinds keep the upstream's payload fields and idempotency-key format exactly; kinds
the upstream never records are marked ``upstream: false`` and keyed by aggregate version, so
every genuine occurrence has a key of its own (spec Z11).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.run_events import (
    MailboxDecisionReceived,
    MailboxResumeFailed,
    RunErrored,
    RunEvent,
    ThreadMessagesCheckpointed,
    ToolPermissionResolved,
)
from run_mailbox.domain.thread_log import ThreadMessage

WRITER_ID = "mailbox"
ORIGIN = "mailbox"


class CanonicalEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    position: int
    kind: str
    upstream: bool
    scopes: list[dict[str, str]]
    thread_id: str
    run_id: str
    visibility: str = "public"
    correlation_id: str
    causation_id: None = None
    origin: str = ORIGIN
    schema_version: int = 1
    writer_id: str = WRITER_ID
    idempotency_key: str
    created_at: int
    payload: dict[str, Any]

    def to_json_line(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _scopes(thread_id: str, run_id: str) -> list[dict[str, str]]:
    return [{"scope_type": "thread", "thread_id": thread_id}, {"scope_type": "run", "run_id": run_id}]


def dispatch_payload(record: DispatchRecord) -> dict[str, Any]:
    """The dispatch-lifecycle family's shared payload (payloads.md section 1)."""
    return {
        "thread_id": record.thread_id,
        "run_id": record.run_id,
        "dispatch_id": record.dispatch_id,
        "dispatch_epoch": record.dispatch_epoch,
        "attempt_count": record.attempt_count,
        "status": record.status.value,
        "available_at": record.available_at,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _dispatch_extras(event: Dispatch.Event) -> dict[str, Any]:
    record = event.dispatch
    if isinstance(event, Dispatch.RunRescheduled):
        return {"reason": event.reason}
    if isinstance(event, Dispatch.RunSuperseded):
        return {"reason": event.reason}
    if isinstance(event, Dispatch.RunInterrupted):
        return {"new_dispatch_epoch": event.new_epoch}
    if isinstance(event, Dispatch.DispatchDeadLettered):
        return {"reason": event.reason, "error": record.last_error}
    if isinstance(event, (Dispatch.DispatchClaimed, Dispatch.LeaseExtended)):
        return {"claimed_by": record.claimed_by, "lease_until": record.lease_until}
    return {}


def _render_dispatch(event: Dispatch.Event, position: int) -> CanonicalEvent:
    record = event.dispatch
    kind = event.kind()
    payload = dispatch_payload(record)
    if event.upstream:
        key = f"{kind}/{record.dispatch_id}/{record.attempt_count}"
        if isinstance(event, Dispatch.RunRescheduled):
            payload["reason"] = event.reason
    else:
        key = f"{kind}/{record.dispatch_id}/{event.originator_version}"
        payload.update(_dispatch_extras(event))
    return CanonicalEvent(
        position=position,
        kind=kind,
        upstream=event.upstream,
        scopes=_scopes(record.thread_id, record.run_id),
        thread_id=record.thread_id,
        run_id=record.run_id,
        correlation_id=record.dispatch_id,
        idempotency_key=key,
        created_at=record.updated_at,
        payload=payload,
    )


_ENVELOPE_FIELDS = {
    "originator_id",
    "originator_version",
    "timestamp",
    "now",
    "originator_topic",
    "resumes_run",
    "pending_tool_calls",
}
ENVELOPE_FIELDS = frozenset(_ENVELOPE_FIELDS)
"""A run event's fields that stay out of its canonical payload."""


def _run_key_and_correlation(event: RunEvent) -> tuple[str, str]:
    kind = event.kind()
    run_id = event.run_id
    if isinstance(event, (MailboxDecisionReceived, ToolPermissionResolved)):
        return f"{kind}/{run_id}/{event.tool_call_id}/{event.decision_id}", event.decision_id
    if isinstance(event, RunErrored):
        correlation = event.dispatch_id or run_id
        return f"RunErrored/{correlation}/{event.attempt_count}", correlation
    if isinstance(event, MailboxResumeFailed):
        # The upstream key plus the refused decision: each failed delivery is its own occurrence (Z11).
        decision = event.decisions[-1]["decision_id"] if event.decisions else ""
        return f"MailboxResumeFailed/{event.dispatch_id}/{event.attempt_count}/{decision}", event.dispatch_id
    if isinstance(event, ThreadMessagesCheckpointed):
        span = f"{event.message_seq_start}-{event.message_seq_end}"
        return f"ThreadMessagesCheckpointed/{event.thread_id}/{run_id}/{span}", run_id
    return f"{kind}/{run_id}/{event.originator_version}", getattr(event, "dispatch_id", None) or run_id


def _render_run(event: RunEvent, position: int) -> CanonicalEvent:
    kind = event.kind()
    key, correlation = _run_key_and_correlation(event)
    if isinstance(event, RunErrored):
        payload: dict[str, Any] = {
            "event_type": "run_finish",
            "thread_id": event.thread_id,
            "run_id": event.run_id,
            "termination": {"type": "error", "value": event.message},
        }
    else:
        payload = event.model_dump(mode="json", exclude=_ENVELOPE_FIELDS)
    return CanonicalEvent(
        position=position,
        kind=kind,
        upstream=event.upstream,
        scopes=_scopes(event.thread_id, event.run_id),
        thread_id=event.thread_id,
        run_id=event.run_id,
        correlation_id=correlation,
        idempotency_key=key,
        created_at=event.now,
        payload=payload,
    )


def _render_message(event: ThreadMessage.MessageCommitted, position: int) -> CanonicalEvent:
    message = event.message
    payload = message.model_dump(mode="json", exclude={"visibility"})
    return CanonicalEvent(
        position=position,
        kind=event.kind(),
        upstream=True,
        scopes=_scopes(message.thread_id, message.run_id),
        thread_id=message.thread_id,
        run_id=message.run_id,
        correlation_id=message.run_id,
        idempotency_key=f"MessageCommitted/{message.thread_id}/{message.run_id}/{message.message_id}",
        created_at=event.now,
        payload=payload,
    )


def render(event: DomainEvent, position: int) -> CanonicalEvent | None:
    """The canonical envelope of one domain event at a log position, or None for the
    thread mailbox's and thread log's bookkeeping events."""
    if isinstance(event, Dispatch.Event):
        return _render_dispatch(event, position)
    if isinstance(event, RunEvent):
        return _render_run(event, position)
    if isinstance(event, ThreadMessage.MessageCommitted):
        return _render_message(event, position)
    return None
