"""An in-process cache of the aggregates this service read or wrote, kept correct by the store.

A command takes its aggregates from here when it can, instead of replaying their events. What
it reads is then checked when it commits: the aggregates it writes by their versions (the store
refuses a version that exists), the ones it only read by an assertion inside the same transaction
(``read_versions``: the store refuses the commit when any of them has moved on). A command whose
cached reads were stale therefore fails to commit and runs again on fresh reads, and a command
that writes nothing checks its cached reads' versions before it returns. The cache holds each
aggregate's version and record, and hands every caller an aggregate object of its own.

It holds a record as its JSON, in a tuple of plain values keyed by the aggregate id's integer:
Python's garbage collector does not track such tuples, bytes or ints. Held as pydantic objects,
the records of a full cache (20,000 aggregates, about six tracked objects each) made every full
collection walk them: 153 ms against 47 ms without them, in a process that had imported what
the benchmarks import, and a worker loop's collections came to promote every new entry into the
oldest generation (docs/performance-journal.md, "the aggregate cache and the garbage collector"). Reading
a record back parses its JSON (about 2 us for a dispatch's); a record whose JSON is longer than
``COMPACT_MAX`` bytes is kept as its object instead, since parsing it on every read would cost
more than the collector does. A record that does not parse back counts as a miss.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

DEFAULT_SIZE = 20_000
COMPACT_MAX = 4_096
"""The longest record JSON, in bytes, kept as JSON; a longer record is kept as its object."""

log = logging.getLogger(__name__)

Entry = tuple[int, int, "bytes | BaseModel", datetime, datetime]
"""The aggregate's kind (its index in ``_KINDS``), version, record (JSON or object), creation and last change."""

_KINDS: list[type[Any]] = []
_KIND_INDEX: dict[type[Any], int] = {}
_KINDS_LOCK = threading.Lock()


def _kind_index(kind: type[Any]) -> int:
    index = _KIND_INDEX.get(kind)
    if index is None:
        with _KINDS_LOCK:
            index = _KIND_INDEX.setdefault(kind, len(_KINDS))
            if index == len(_KINDS):
                _KINDS.append(kind)
    return index


class AggregateCache:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[int, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, aggregate_id: UUID) -> Any | None:
        """A new aggregate object in the cached state of ``aggregate_id``, or None."""
        with self._lock:
            entry = self._entries.get(aggregate_id.int)
            if entry is not None:
                self._entries.move_to_end(aggregate_id.int)
        if entry is None:
            return None
        kind_index, version, state, created_on, modified_on = entry
        kind = _KINDS[kind_index]
        if isinstance(state, bytes):
            try:
                # what model_validate_json does, without its wrapper (a tenth of a take)
                state = kind.record_type.__pydantic_validator__.validate_json(state)
            except ValidationError as exc:  # not expected: every record came from validated events
                log.warning("cached %s %s did not parse back (%s): a miss", kind.__name__, aggregate_id, exc)
                self.evict([aggregate_id])
                return None
        aggregate: Any = object.__new__(kind)
        aggregate.__base_init__(originator_id=aggregate_id, originator_version=version, timestamp=created_on)
        aggregate._modified_on = modified_on
        aggregate.record = state
        return aggregate

    def put(self, aggregate: Any) -> None:
        """Keeps the aggregate's committed state (call after a successful save only)."""
        if self.size <= 0 or aggregate.pending_events:
            return
        key, version = aggregate.id.int, aggregate.version
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current[1] == version:  # only read: the same state is cached
                self._entries.move_to_end(key)
                return
        record = aggregate.record
        state: bytes | BaseModel = record
        try:
            encoded: bytes = record.__pydantic_serializer__.to_json(record)
            if len(encoded) <= COMPACT_MAX:
                state = encoded
        except PydanticSerializationError:  # not expected (the record's events were encoded): never fail a commit
            pass
        entry = (_kind_index(type(aggregate)), version, state, aggregate.created_on, aggregate.modified_on)
        with self._lock:
            current = self._entries.get(key)
            if current is not None and current[1] >= version:
                return  # this state, or a newer one, was cached meanwhile by another thread
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def evict(self, aggregate_ids: Any) -> None:
        with self._lock:
            for aggregate_id in aggregate_ids:
                self._entries.pop(aggregate_id.int, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
