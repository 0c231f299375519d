"""The events of a write, packed by ``pg_event_rows`` into the binary form of the row type's array, on real
Postgres: the server reads back exactly what psycopg's own composite dumping sends, for any events a command
can hold (NUL bytes, non-ASCII topics, states of megabytes, no events at all), and a write through the
service stores them byte for byte."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.sql import SQL

from run_mailbox.infrastructure.persistence import pg_event_rows
from run_mailbox.infrastructure.service import MailboxService

pytestmark = pytest.mark.postgres


def stored_events(topic_characters: st.SearchStrategy[str]) -> st.SearchStrategy[StoredEvent]:
    return st.builds(
        StoredEvent,
        originator_id=st.uuids(),
        originator_version=st.integers(min_value=1, max_value=2**63 - 1),
        topic=st.text(topic_characters, min_size=1, max_size=80),
        state=st.binary(max_size=2_000) | st.binary(max_size=50).map(lambda b: b"\x00" + b + b"\x00"),  # end NULs
    )


ascii_events = stored_events(st.characters(max_codepoint=127, blacklist_characters="\x00"))
any_events = stored_events(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@pytest.fixture
def recorder(postgres_env: dict[str, str]) -> Iterator[Any]:
    service = MailboxService(env=postgres_env)
    try:
        yield service.recorder
    finally:
        service.close()


def read_back(recorder: Any, rows: Any) -> list[tuple[Any, ...]]:
    """What the server makes of ``rows`` sent as the write statement sends them (``%b::<type>[]``)."""
    statement = SQL("SELECT originator_id, originator_version, topic, state FROM unnest(%b::{}[])").format(
        recorder.qualified(recorder.stored_event_type_name)
    )
    with recorder.datastore.get_connection() as conn:
        recorder._configure_session(conn)
        rows_read = conn.execute(statement, [rows]).fetchall()
    return [(r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"])) for r in rows_read]


def composites(recorder: Any, stored: list[StoredEvent]) -> list[Any]:
    return [recorder.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state) for e in stored]


@given(stored=st.lists(ascii_events, max_size=6) | st.lists(any_events, max_size=6))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_packed_events_read_back_as_the_same_rows_as_psycopgs_composites(recorder, stored):
    """Property: for any events, the server reads the packed array as the same rows, in the same order,
    as the array psycopg dumps from the library's composites (events with a topic beyond ASCII are left to
    psycopg, which encodes text in the connection's client encoding)."""
    packed = pg_event_rows.event_rows(recorder, stored)
    assert isinstance(packed, pg_event_rows.PackedEvents) == all(e.topic.isascii() for e in stored)
    expected = [(e.originator_id, e.originator_version, e.topic, e.state) for e in stored]
    assert read_back(recorder, packed) == expected == read_back(recorder, composites(recorder, stored))


def test_a_state_of_several_megabytes_and_nul_bytes_survives_the_packing(recorder):
    state = b"\x00" + bytes(range(256)) * 16_384 + b"\x00"  # 4 MiB between NULs
    stored = [StoredEvent(uuid.uuid4(), 1, "tests:Big", state), StoredEvent(uuid.uuid4(), 2, "tests:Small", b"")]
    assert read_back(recorder, pg_event_rows.event_rows(recorder, stored)) == [
        (e.originator_id, e.originator_version, e.topic, e.state) for e in stored
    ]


def test_a_row_type_of_another_shape_is_left_to_psycopgs_composites(recorder, monkeypatch):
    info = recorder.datastore.psycopg_type_adapters[recorder.stored_event_type_name]
    assert pg_event_rows.packs(info.field_types)
    monkeypatch.setattr(info, "field_types", [25, 20, 25, 17])  # text originator ids
    stored = [StoredEvent(uuid.uuid4(), 1, "tests:Probe", b"{}")]
    rows = pg_event_rows.event_rows(recorder, stored)
    assert not isinstance(rows, pg_event_rows.PackedEvents)
    assert [tuple(r) for r in rows] == [(e.originator_id, e.originator_version, e.topic, e.state) for e in stored]


def test_a_write_through_the_service_stores_each_event_byte_for_byte(postgres_env, monkeypatch):
    service = MailboxService(env=postgres_env)
    sent: list[StoredEvent] = []
    insert_events = service.recorder.insert_events

    def keeping(stored_events, **kwargs):
        sent.extend(stored_events)
        return insert_events(stored_events, **kwargs)

    monkeypatch.setattr(service.recorder, "insert_events", keeping)
    try:
        service.submit("thread-ü", "run-1")
        claimed = service.claim("thread-ü", consumer_id="w")
        service.nack(claimed.dispatch_id, claim_token=claimed.claim_token, error="é\u2028😀 " * 4_000)
        assert len(sent) >= 6
        for event in sent:
            (again,) = service.recorder.select_events(
                event.originator_id, gt=event.originator_version - 1, lte=event.originator_version
            )
            assert (again.topic, again.state) == (event.topic, event.state)
    finally:
        service.close()
