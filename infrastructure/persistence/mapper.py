"""Stores pydantic domain events under stable names with a schema version, and reads them back
through the upcasters of their class.

A stored event's topic is its stable name (``Dispatch.DispatchClaimed``, see
``run_mailbox.domain.event_names``) and its state is the event's JSON with the version of its
stored shape first: ``{"v":2,"timestamp":...}``. The originator's id and version are not in the
state (since version 2): they are the stored row's own columns, and reading takes them from there.
Reading an event of the current version parses the JSON straight into the event class (the version
prefix replaced by the row's id and version); an older one is parsed to a dict, upcast step by step,
given the row's id and version, then validated; a state without a version (written by run-mailbox
0.1.0) is version 1. The library's compressor and cipher settings are honoured.
"""

from __future__ import annotations

import json
from typing import Any, cast
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from pydantic import BaseModel, ValidationError

from run_mailbox.domain.event_names import event_class, name_of
from run_mailbox.domain.model import ORIGINATOR_FIELDS, NewerThanThisCode, upcast

_VERSION_KEY = b'{"v":'
_LEFT_TO_THE_ROW: set[str] = set(ORIGINATOR_FIELDS)


class UndecodableEvent(ValueError):
    """A stored event could not be read back: it names the event and why."""


def encode_state(event: BaseModel) -> bytes:
    # The serializer itself: ``model_dump_json`` writes these same bytes, then decodes them to a str
    # that would only be encoded again (0.4 of the 2.0 us an event's encoding took).
    body: bytes = type(event).__pydantic_serializer__.to_json(event, exclude=_LEFT_TO_THE_ROW)
    return b'{"v":%d,' % type(event).class_version + body[1:]  # type: ignore[attr-defined]


def decode_state(topic: str, state: bytes, originator_id: Any, originator_version: int) -> Any:
    """The event stored under ``topic`` with ``state``, in the row of ``originator_id`` at ``originator_version``."""
    cls: Any = event_class(topic)
    if state.startswith(_VERSION_KEY):
        comma = state.index(b",", len(_VERSION_KEY))
        version = int(state[len(_VERSION_KEY) : comma])
        members = state[comma + 1 :]  # the object's members after the version, and its closing brace
    else:
        version, members = 1, state[1:]
    if version == cls.class_version:
        uuid = originator_id.hex if isinstance(originator_id, UUID) else str(originator_id)  # the short form is cheaper
        originator = b'{"originator_id":"%s","originator_version":%d' % (uuid.encode(), int(originator_version))
        return cls.__pydantic_validator__.validate_json(originator + b"," + members)  # model_validate_json, unwrapped
    data = upcast(cls, "upcast", json.loads(b"{" + members), version, cls.class_version, what=topic)
    data.update(originator_id=originator_id, originator_version=originator_version)
    return cls.model_validate(data)


class PydanticMapper(Mapper[Any]):
    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        state = encode_state(cast(BaseModel, domain_event))
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=name_of(type(domain_event)),
            state=state,
        )

    def to_domain_event(self, stored_event: Any) -> Any:
        state = stored_event.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        try:
            return decode_state(stored_event.topic, state, stored_event.originator_id, stored_event.originator_version)
        except (KeyError, ValueError, ValidationError, NewerThanThisCode, RecursionError) as exc:
            raise UndecodableEvent(
                f"cannot read stored event {stored_event.topic} of {stored_event.originator_id} "
                f"version {stored_event.originator_version}: {exc}"
            ) from exc
