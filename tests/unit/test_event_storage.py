"""How events are stored: stable names, a version in every state, upcasters for older versions."""

from __future__ import annotations

import json
import re
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.event_names import AGGREGATES, EVENTS, LEGACY_TOPICS, name_of
from run_mailbox.infrastructure.persistence.mapper import PydanticMapper, UndecodableEvent
from run_mailbox.infrastructure.service import MailboxService


@pytest.fixture
def mapper() -> PydanticMapper:
    return MailboxService().mapper  # type: ignore[return-value]


def dead_letter_event() -> Dispatch.DispatchDeadLettered:
    service = MailboxService()
    service.submit("t", "r", max_attempts=1, now=1)
    claimed = service.claim("t", consumer_id="w", now=2)
    assert claimed is not None and claimed.claim_token is not None
    service.nack(claimed.dispatch_id, claim_token=claimed.claim_token, error="boom", now=3)
    events = [service.mapper.to_domain_event(n) for n in service.recorder.select_notifications(0, 100)]
    return next(e for e in events if isinstance(e, Dispatch.DispatchDeadLettered))


def test_every_stored_event_has_a_stable_name_of_its_aggregate_and_its_own():
    names = [name for name in EVENTS if name != "Snapshot"]
    assert len(names) == 28
    for name, cls in EVENTS.items():
        assert name_of(cls) == name
        assert re.fullmatch(r"(Snapshot|(Dispatch|Run|ThreadMailbox|ThreadLog|ThreadMessage)\.[A-Z]\w+)", name)
    assert {a.TOPIC for a in AGGREGATES} == {"Dispatch", "Run", "ThreadMailbox", "ThreadLog", "ThreadMessage"}


def test_a_stored_state_starts_with_its_version_and_reads_back_equal(mapper):
    event = dead_letter_event()
    stored = mapper.to_stored_event(event)
    assert stored.topic == "Dispatch.DispatchDeadLettered"
    assert stored.state.startswith(b'{"v":3,"timestamp":')
    assert mapper.to_domain_event(stored) == event


def test_a_stored_state_leaves_the_originator_to_its_row(mapper):
    """The id and version are the row's columns: not repeated in the state, and read from the row."""
    event = dead_letter_event()
    stored = mapper.to_stored_event(event)
    assert str(event.originator_id).encode() not in stored.state
    assert b"originator_version" not in stored.state
    other = uuid4()
    moved = mapper.to_domain_event(StoredEvent(str(other), 7, stored.topic, stored.state))
    assert (moved.originator_id, moved.originator_version) == (other, 7)
    assert moved.model_copy(update={"originator_id": event.originator_id, "originator_version": 3}) == event


def stored_as(event: Dispatch.DispatchDeadLettered, state: dict, version: int | None, topic: str) -> StoredEvent:
    """``event``'s row with ``state`` stored at ``version`` (None: unversioned, as 0.1.0 stored it)."""
    body = json.dumps(state).encode()
    prefixed = body if version is None else b'{"v":%d,' % version + body[1:]
    return StoredEvent(event.originator_id, event.originator_version, topic, prefixed)


def test_an_older_version_is_upcast_when_read(mapper):
    event = dead_letter_event()
    state = json.loads(event.model_dump_json())
    assert "originator_id" in state, "versions 1 and 2 held the originator in the state"
    assert mapper.to_domain_event(stored_as(event, state, 2, "Dispatch.DispatchDeadLettered")) == event
    state["cause"] = state.pop("reason")  # as version 1 stored it
    assert mapper.to_domain_event(stored_as(event, state, 1, "Dispatch.DispatchDeadLettered")) == event
    legacy = stored_as(event, state, None, "domain.dispatch:Dispatch.DispatchDeadLettered")
    assert mapper.to_domain_event(legacy) == event, "0.1.0 stored no version and a module path"


def test_a_state_from_a_newer_version_is_refused_with_a_clear_error(mapper):
    event = dead_letter_event()
    newer = StoredEvent(event.originator_id, 9, "Dispatch.DispatchDeadLettered", b'{"v":4,"x":1}')
    with pytest.raises(UndecodableEvent, match=r"stored at version 4.*upgrade run-mailbox"):
        mapper.to_domain_event(newer)


def test_an_unknown_name_is_refused_without_importing_anything(mapper):
    unknown = StoredEvent(uuid4(), 1, "os:system", b"{}")
    with pytest.raises(UndecodableEvent, match="no mailbox event is stored under 'os:system'"):
        mapper.to_domain_event(unknown)


def test_every_legacy_topic_names_a_current_event_or_aggregate():
    targets = set(EVENTS) | {a.TOPIC for a in AGGREGATES}
    assert set(LEGACY_TOPICS.values()) <= targets
    assert len(LEGACY_TOPICS) == 28 + 5 + 1
