"""The snapshots table's recorder: the library's, under the mailbox's retry policy and typed errors.

The library builds it (``PostgresFactory.aggregate_recorder(purpose="snapshots")``) from a fixed
class, so the service swaps it for this one after construction (same datastore, same table).
Without it a read of a snapshot after a server restart used up the library's ten attempts on the
pool's dead connections and reached the caller as a raw ``OperationalError``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder

from run_mailbox.infrastructure.persistence.pg_errors import StorePolicy

_select_events = inspect.unwrap(PostgresAggregateRecorder.select_events)
_insert_events = inspect.unwrap(PostgresAggregateRecorder.insert_events)


class PostgresSnapshotRecorder(PostgresAggregateRecorder):
    @classmethod
    def adopt(cls, recorder: PostgresAggregateRecorder) -> PostgresSnapshotRecorder:
        """This recorder on the table and datastore of the library's (whose tables exist)."""
        return cls(recorder.datastore, events_table_name=recorder.events_table_name)

    def __init__(self, datastore: Any, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.policy = StorePolicy(datastore)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        result: Sequence[int] | None = self.policy.call("write", lambda: _insert_events(self, stored_events, **kwargs))
        return result

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        events: Sequence[StoredEvent] = self.policy.call(
            "read", lambda: _select_events(self, originator_id, gt=gt, lte=lte, desc=desc, limit=limit)
        )
        return events
