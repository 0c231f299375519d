"""An in-process cache of the aggregates this service read or wrote, kept correct by the store.

A command takes its aggregates from here when it can, instead of replaying their events. What
it reads is then checked when it commits: the aggregates it writes by their versions (the store
refuses a version that exists), the ones it only read by an assertion inside the same transaction
(``read_versions``: the store refuses the commit when any of them has moved on). A command whose
cached reads were stale therefore fails to commit and runs again on fresh reads, and a command
that writes nothing checks its cached reads' versions before it returns. The cache holds each
aggregate's immutable record and version, and hands every caller an aggregate object of its own.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

DEFAULT_SIZE = 20_000


@dataclass(frozen=True)
class Entry:
    kind: type[Any]
    version: int
    record: Any
    created_on: datetime
    modified_on: datetime

    def aggregate(self, aggregate_id: UUID) -> Any:
        """A new aggregate object in this state (records are frozen, so they are shared safely)."""
        aggregate: Any = object.__new__(self.kind)
        aggregate.__base_init__(originator_id=aggregate_id, originator_version=self.version, timestamp=self.created_on)
        aggregate._modified_on = self.modified_on
        aggregate.record = self.record
        return aggregate


class AggregateCache:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[UUID, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, aggregate_id: UUID) -> Entry | None:
        with self._lock:
            entry = self._entries.get(aggregate_id)
            if entry is not None:
                self._entries.move_to_end(aggregate_id)
            return entry

    def put(self, aggregate: Any) -> None:
        """Keeps the aggregate's committed state (call after a successful save only)."""
        if self.size <= 0 or aggregate.pending_events:
            return
        entry = Entry(type(aggregate), aggregate.version, aggregate.record, aggregate.created_on, aggregate.modified_on)
        with self._lock:
            current = self._entries.get(aggregate.id)
            if current is not None and current.version > entry.version:
                return  # a newer state was cached meanwhile by another thread
            self._entries[aggregate.id] = entry
            self._entries.move_to_end(aggregate.id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def evict(self, aggregate_ids: Any) -> None:
        with self._lock:
            for aggregate_id in aggregate_ids:
                self._entries.pop(aggregate_id, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
