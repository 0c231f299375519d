"""Typed models of every canonical event: one payload model per kind, and the envelope for each kind.

They are derived from the domain's event models and follow the rendering rules of
:mod:`run_mailbox.projections.canonical` (a test renders every event of the golden logs and of
fresh runs and validates each envelope against them, so they cannot drift apart):

- a **dispatch** event's payload is the dispatch family's shared fields (``DISPATCH_FIELDS``, typed
  as in :class:`~run_mailbox.domain.dispatch_record.DispatchRecord`; ``status`` narrowed to the
  statuses the transition table says the event leaves), plus, for kinds the upstream never records,
  the event's own facts (``claimed_by`` and ``lease_until`` of a claim, ``reason``, ``error``, ...),
  and for ``RunRescheduled`` its ``reason``;
- a **run** event's payload is the event's own fields, less the envelope's;
  ``RunErrored`` has the upstream's RunFinish shape;
- ``MessageCommitted``'s payload is the committed message, less its visibility.

The JSON Schemas in ``docs/schemas/`` are generated from these models (``python -m run_mailbox.reference``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.event_names import EVENTS
from run_mailbox.domain.messages import ContentBlock, Role
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.run_events import RunErrored, RunEvent
from run_mailbox.domain.thread_log import CommittedMessage, ThreadMessage
from run_mailbox.domain.transitions import DISPATCH_TRANSITIONS, targets_of
from run_mailbox.domain.values import Millis
from run_mailbox.projections.canonical import ENVELOPE_FIELDS, CanonicalEvent

_FORBID = ConfigDict(extra="forbid", frozen=True)

DISPATCH_FIELDS = (
    "thread_id",
    "run_id",
    "dispatch_id",
    "dispatch_epoch",
    "attempt_count",
    "status",
    "available_at",
    "created_at",
    "updated_at",
)
"""The dispatch-lifecycle family's shared payload fields (``canonical.dispatch_payload``)."""

MessageKind = Literal[
    "user_input", "internal_user_input", "assistant_output", "tool_result", "system", "internal_system"
]


def _model(name: str, fields: dict[str, Any], base: type[BaseModel] | None = None) -> Any:
    """``pydantic.create_model`` of fields built at run time (which no type checker can follow)."""
    make: Any = create_model
    if base is None:
        return make(name, __config__=_FORBID, **fields)
    return make(name, __base__=base, **fields)


def _annotation(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].annotation


def _dispatch_extras(event: type[Dispatch.Event]) -> dict[str, Any]:
    """The fields ``canonical._render_dispatch`` adds to the shared ones, for this kind."""
    if event.upstream:
        return {"reason": (_annotation(event, "reason"), ...)} if issubclass(event, Dispatch.RunRescheduled) else {}
    if issubclass(event, (Dispatch.DispatchClaimed, Dispatch.LeaseExtended)):
        return {"claimed_by": (str, ...), "lease_until": (Millis, ...)}
    if issubclass(event, Dispatch.DispatchDeadLettered):
        return {"reason": (_annotation(event, "reason"), ...), "error": (str, ...)}
    if issubclass(event, Dispatch.RunSuperseded):
        return {"reason": (str, ...)}
    return {}


def _dispatch_payload(event: type[Dispatch.Event]) -> type[BaseModel]:
    statuses = tuple(targets_of(DISPATCH_TRANSITIONS, event.kind()))
    fields: dict[str, Any] = {name: (_annotation(DispatchRecord, name), ...) for name in DISPATCH_FIELDS}
    fields["status"] = (Literal[statuses], ...)
    fields.update(_dispatch_extras(event))
    model: type[BaseModel] = _model(f"{event.kind()}Payload", fields)
    return model


def _run_payload(event: type[RunEvent]) -> type[BaseModel]:
    if issubclass(event, RunErrored):
        termination = _model("ErrorTermination", {"type": (Literal["error"], ...), "value": (str, ...)})
        errored: type[BaseModel] = _model(
            "RunErroredPayload",
            {
                "event_type": (Literal["run_finish"], ...),
                "thread_id": (str, ...),
                "run_id": (str, ...),
                "termination": (termination, ...),
            },
        )
        return errored
    fields = {
        name: (info.annotation, Field(..., description=info.description))
        for name, info in event.model_fields.items()
        if name not in ENVELOPE_FIELDS
    }
    model: type[BaseModel] = _model(f"{event.kind()}Payload", fields)
    return model


def _message_payload() -> type[BaseModel]:
    fields: dict[str, Any] = {
        name: (info.annotation, ...) for name, info in CommittedMessage.model_fields.items() if name != "visibility"
    }
    fields.update(role=(Role, ...), message_kind=(MessageKind, ...), content_blocks=(list[ContentBlock], ...))
    model: type[BaseModel] = _model("MessageCommittedPayload", fields)
    return model


def _payload_model(event: type[DomainEvent]) -> type[BaseModel] | None:
    if issubclass(event, Dispatch.Event):
        return _dispatch_payload(event)
    if issubclass(event, RunEvent):
        return _run_payload(event)
    if issubclass(event, ThreadMessage.MessageCommitted):
        return _message_payload()
    return None  # bookkeeping: never rendered


def _rendered_events() -> list[type[DomainEvent]]:
    order = {"Dispatch": 0, "Run": 1, "ThreadMessage": 2}
    rendered = [cls for name, cls in EVENTS.items() if name.split(".")[0] in order]
    return sorted(rendered, key=lambda cls: (order[cls.TOPIC.split(".")[0]], cls.TOPIC))


PAYLOADS: dict[str, type[BaseModel]] = {}
"""The payload model of every rendered kind, by kind."""
UPSTREAM: dict[str, bool] = {}
"""Whether the upstream records each kind."""
for _event in _rendered_events():
    _payload = _payload_model(_event)
    if _payload is not None:
        PAYLOADS[_event.kind()] = _payload
        UPSTREAM[_event.kind()] = _event.upstream


def envelope_model(kind: str) -> type[CanonicalEvent]:
    """The envelope of one kind: ``kind`` and ``upstream`` fixed, ``payload`` typed."""
    fields = {
        "kind": (Literal[kind], ...),
        "upstream": (Literal[UPSTREAM[kind]], ...),
        "payload": (PAYLOADS[kind], ...),
    }
    envelope: type[CanonicalEvent] = _model(f"{kind}Event", fields, base=CanonicalEvent)
    return envelope


ENVELOPES: dict[str, type[CanonicalEvent]] = {kind: envelope_model(kind) for kind in PAYLOADS}
"""The typed envelope model of every kind."""

AnyCanonicalEvent: Any = Annotated[Union[tuple(ENVELOPES.values())], Field(discriminator="kind")]  # noqa: UP007
"""Any canonical event, told apart by ``kind``."""
ANY_EVENT: TypeAdapter[Any] = TypeAdapter(AnyCanonicalEvent)
"""Validates (and describes, as JSON Schema) any exported canonical event."""
