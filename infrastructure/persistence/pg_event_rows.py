"""The events of a write, packed here into the binary form of an array of the events table's row type.

psycopg dumps an array of composites in Python, field by field: for the 2-4 events of a command that
took about 200 us of the client's CPU per write on the 2 vCPU machines the benchmarks run on, as much
as the rest of the statement's execution (docs/performance-journal.md, "2026-12-03 night"). The type is
fixed (``uuid, bigint, text, bytea``: the library's ``stored_event_uuid``), so its wire form is a few
``struct`` packs: the array header (one dimension, no NULLs, the row type's oid), then per event its
length and the record (four fields, each with its type's oid and length). The write statement casts
the parameter to the array type (``%b::stored_event_uuid[]``), so it is sent with no type of its own
and the server reads it with that type's receive function, which checks every oid it carries.

A row type of another shape (text originator ids), or a topic beyond ASCII (psycopg encodes text in the
connection's client encoding), is left to psycopg's composite dumper.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PgStoredEvent, PostgresApplicationRecorder
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format

UUID_OID, INT8_OID, TEXT_OID, BYTEA_OID = 2950, 20, 25, 17
FIELD_TYPES = (UUID_OID, INT8_OID, TEXT_OID, BYTEA_OID)
"""The row type's fields, in order, that this packs."""

_EMPTY = struct.Struct("!iiI")  # no dimensions, no NULLs, element type
_HEADER = struct.Struct("!iiIii")  # one dimension, no NULLs, element type, its length, lower bound 1
_RECORD = struct.Struct("!iiIi16sIiqIi")  # record length; 4 fields; uuid; bigint; the text's oid and length
_STATE = struct.Struct("!Ii")  # the bytea's oid and length
_FIXED = 4 + (8 + 16) + (8 + 8) + 8 + 8  # a record's bytes besides its topic and state


class PackedEvents(bytes):
    """An array of the row type in its binary wire form, ready to be sent as it is."""


EventRows = PackedEvents | list[PgStoredEvent]
"""The events as the write statement takes them."""


class PackedEventsDumper(Dumper):
    """Sends a ``PackedEvents`` as it is, in binary, with no type: the statement's cast gives it one."""

    format = Format.BINARY
    oid = 0

    def dump(self, obj: Buffer) -> Buffer:
        return obj


def event_rows(recorder: PostgresApplicationRecorder, events: Sequence[StoredEvent]) -> EventRows:
    """``events`` packed here when the recorder's row type is registered and has the shape that packs and
    every topic is ASCII (the same bytes in every client encoding; the library's topics are module paths),
    else as the library's composites (which raise the library's error when the type is not registered)."""
    name = recorder.stored_event_type_name
    info = recorder.datastore.psycopg_type_adapters.get(name)
    if (
        info
        and name in recorder.datastore.psycopg_python_types
        and packs(info.field_types)
        and all(e.topic.isascii() for e in events)
    ):
        return pack_events(info.oid, events)
    return [recorder.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state) for e in events]


def packs(field_types: Sequence[int]) -> bool:
    """Whether a row type with these field type oids is one ``pack_events`` writes."""
    return tuple(field_types) == FIELD_TYPES


def pack_events(row_type_oid: int, events: Sequence[StoredEvent]) -> PackedEvents:
    """``events`` as an array of the row type whose oid is ``row_type_oid`` (fields: ``FIELD_TYPES``), each
    topic in UTF-8 (``event_rows`` packs only ASCII ones)."""
    if not events:
        return PackedEvents(_EMPTY.pack(0, 0, row_type_oid))
    parts: list[bytes] = [_HEADER.pack(1, 0, row_type_oid, len(events), 1)]
    for event in events:
        topic = event.topic.encode()
        state = event.state
        parts.append(
            _RECORD.pack(
                _FIXED + len(topic) + len(state),
                4,
                UUID_OID,
                16,
                _uuid_bytes(event.originator_id),
                INT8_OID,
                8,
                event.originator_version,
                TEXT_OID,
                len(topic),
            )
        )
        parts.append(topic)
        parts.append(_STATE.pack(BYTEA_OID, len(state)))
        parts.append(state)
    return PackedEvents(b"".join(parts))


def _uuid_bytes(originator_id: Any) -> bytes:
    return (originator_id if isinstance(originator_id, UUID) else UUID(str(originator_id))).bytes
