"""The Postgres application recorder, extended with the idempotency table, the dispatch index and
the ready heads, all written in the transaction that inserts the events.

The write path is this recorder's own, not the library's (eventsourcing 9.5.6 sends the whole
transaction through a psycopg pipeline). With psycopg 3.3's pipeline:

- a batch of several MB hangs for ever while holding the events table's EXCLUSIVE lock (psycopg
  stops flushing libpq's send buffer once its command queue is empty and waits for results the
  server cannot send before it has the rest of the message: see docs/decisions/0011);
- a statement that psycopg prepares automatically (after 5 uses) in a pipeline aborted by an earlier
  error (a duplicate key, a lock timeout) is remembered as prepared although the server skipped it:
  every later use on that connection fails with "prepared statement does not exist";
- an exception raised in Python after the hook ran (building the events) was caught inside the
  library's transaction block, which then committed the hook's rows without the events.

Here a write is one statement in its own transaction, one round trip: a server-side function
(``<app>_write``, migration 4) takes the events table's lock (waiting at most the lock timeout),
announces the insert, checks that the aggregates the command only read are still at the versions it
read (``read_versions``: a stale one aborts it as a conflict), writes the idempotency row, the
dispatch-index and ready-head rows and the events (sent in binary), and returns their notification
ids. No client code runs while the lock is held, the statement is flushed completely before its
result is read, any error rolls everything back, and failures reach the caller as the mailbox's
typed errors (``pg_errors``). A duplicate idempotency key aborts the whole write. The statement and
idle-in-transaction timeouts are set once per connection.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal
from psycopg.types.json import Jsonb
from pydantic_core import to_json

from run_mailbox.infrastructure.persistence import migrations, pg_event_rows, pg_pool, pg_reindex, pg_schema
from run_mailbox.infrastructure.persistence.pg_errors import StorePolicy
from run_mailbox.infrastructure.persistence.pg_heads_vacuum import HeadsVacuum, vacuum_heads
from run_mailbox.infrastructure.persistence.pg_statements import Statements
from run_mailbox.infrastructure.persistence.ready_heads import HEAD_COLUMNS, ReadyHeadRow
from run_mailbox.infrastructure.persistence.rows import (
    INDEX_COLUMNS,
    DeadLetterPage,
    DispatchIndexRow,
    IdempotencyRow,
    ReadyThread,
    sorted_index_rows,
)

T = TypeVar("T")


# The library's reads without their retry decorator: this recorder applies the policy itself.
_select_events = inspect.unwrap(PostgresApplicationRecorder.select_events)
_select_notifications = inspect.unwrap(PostgresApplicationRecorder.select_notifications)
_max_notification_id = inspect.unwrap(PostgresApplicationRecorder.max_notification_id)


@dataclass(frozen=True)
class StoreTimeouts:
    """``SET LOCAL`` values of every write transaction, in milliseconds (0 disables one)."""

    lock_ms: int = 5_000
    statement_ms: int = 30_000
    idle_in_transaction_ms: int = 5_000


class PostgresMailboxRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.table_prefix = events_table_name.removesuffix("_events")
        self.sql = Statements(self)
        # The library's statement, with the events sent in binary (%b): half the bytes of the hex text
        # form, parsed about 4x faster by the server, which holds the events lock meanwhile.
        self.insert_events_statement = self.sql.insert_events
        self.policy = StorePolicy(datastore)
        self.heads_vacuum = HeadsVacuum(lambda: vacuum_heads(self))
        self.configure(StoreTimeouts())
        pg_pool.hand_out_recent_first(datastore.pool)

    def configure(self, timeouts: StoreTimeouts) -> None:
        """Sets the timeouts: the lock timeout of every write, the others of every pooled connection."""
        self.timeouts = timeouts
        self._sessions: weakref.WeakKeyDictionary[Any, Composed] = weakref.WeakKeyDictionary()
        self._session_settings = SQL("SET statement_timeout = {}; SET idle_in_transaction_session_timeout = {}").format(
            Literal(f"{timeouts.statement_ms}ms"), Literal(f"{timeouts.idle_in_transaction_ms}ms")
        )
        self.begin_write = SQL(
            "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}; "
            "SET LOCAL idle_in_transaction_session_timeout = {}; LOCK TABLE {} IN EXCLUSIVE MODE; NOTIFY {}"
        ).format(
            Literal(f"{timeouts.lock_ms}ms"),
            Literal(f"{timeouts.statement_ms}ms"),
            Literal(f"{timeouts.idle_in_transaction_ms}ms"),
            self.qualified(self.events_table_name),
            Identifier(self.channel_name),
        )

    # ------------------------------------------------------------------ names and schema

    def qualified(self, name: str) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(name))

    def table(self, name: str, *, prefixed: bool = True) -> str:
        """A table (or type, or function) in the schema, quoted: ``"public"."mailboxservice_<name>"``."""
        return self.qualified(f"{self.table_prefix}_{name}" if prefixed else name).as_string(None)

    def index(self, name: str) -> str:
        return Identifier(f"{self.table_prefix}_{name}").as_string(None)

    @property
    def channel(self) -> str:
        """The channel a write notifies (the library's subscriptions listen on it), quoted."""
        return Identifier(self.channel_name).as_string(None)

    def create_table(self) -> None:
        if pg_schema.recorded_version(self) == migrations.POSTGRES[-1].version:
            self.datastore.register_type_adapters()
            return
        super().create_table()

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Several processes starting at once would race on CREATE ... IF NOT EXISTS and
        # CREATE OR REPLACE FUNCTION ("tuple concurrently updated"): take turns.
        lock_name = Literal(f"{self.datastore.schema}.{self.events_table_name}")
        curs.execute(SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(lock_name))
        super()._create_table(curs)
        pg_schema.migrate(self, curs)

    def _call(self, operation: str, attempt: Callable[[], T]) -> T:
        return self.policy.call(operation, attempt)

    # ------------------------------------------------------------------ writes

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        # Built before the transaction: a failure here leaves nothing behind and holds no lock.
        rows = pg_event_rows.event_rows(self, stored_events)
        return self._call("write", lambda: self._write(stored_events, rows, **kwargs))

    def _write(
        self, stored_events: Sequence[StoredEvent], rows: pg_event_rows.EventRows, **kwargs: Any
    ) -> list[int] | None:
        params = self._write_params(rows, **kwargs)
        with pg_pool.PooledConnection(self.datastore) as conn:
            self._configure_session(conn)
            with conn.cursor(row_factory=tuple_row) as curs:
                curs.execute(self.sql.write, params)
                ids = [row[0] for row in curs.fetchall()]
        self.heads_vacuum.changed(len(kwargs.get("head_rows") or ()))
        return ids if stored_events else None

    def _write_params(self, rows: pg_event_rows.EventRows, **kwargs: Any) -> list[Any]:
        read_versions: dict[UUID, int] = kwargs.get("read_versions") or {}
        key: IdempotencyRow | None = kwargs.get("idempotency")
        heads: Mapping[str, ReadyHeadRow | None] = kwargs.get("head_rows") or {}
        side = {
            "read": [[str(i), v] for i, v in read_versions.items()],
            "idem": None if key is None else vars(key),
            "index": [vars(r) for r in sorted_index_rows(kwargs.get("index_rows"))],
            "gone": sorted(t for t, head in heads.items() if head is None),
            "heads": [vars(head) for _, head in sorted(heads.items()) if head is not None],
            "new": [str(i) for i in kwargs.get("presumed_new") or ()],
        }
        # pydantic's serializer writes the compact UTF-8 JSON json.dumps would, in a fifth of the time
        return [self.timeouts.lock_ms, rows, Jsonb(side, dumps=to_json)]

    def _configure_session(self, conn: Any) -> None:
        """The statement and idle-in-transaction timeouts, set once on each pooled connection, and the
        dumper of packed events (on the connection only: nothing global changes for the host app)."""
        if self._sessions.get(conn) != self._session_settings:
            conn.adapters.register_dumper(pg_event_rows.PackedEvents, pg_event_rows.PackedEventsDumper)
            conn.execute(self._session_settings, prepare=False)
            self._sessions[conn] = self._session_settings

    def replace_dispatch_index(self, rows: list[DispatchIndexRow]) -> None:
        self._call("write", lambda: pg_reindex.replace_dispatch_index(self, rows))

    # ------------------------------------------------------------------ the library's reads, under the policy

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        return self._call("read", lambda: _select_events(self, originator_id, gt=gt, lte=lte, desc=desc, limit=limit))

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        return self._call(
            "read",
            lambda: _select_notifications(self, start, limit, stop, topics, inclusive_of_start=inclusive_of_start),
        )

    def max_notification_id(self) -> int | None:
        head: int | None = self._call("read", lambda: _max_notification_id(self))
        return head

    # ------------------------------------------------------------------ our reads

    def _select(self, statement: Composed | str, params: Sequence[Any] | Mapping[str, Any]) -> list[dict[str, Any]]:
        def attempt() -> list[dict[str, Any]]:
            with pg_pool.PooledConnection(self.datastore) as conn, conn.cursor() as curs:
                curs.execute(statement, params, prepare=True)
                return list(curs.fetchall())

        return self._call("read", attempt)

    def _index_rows(self, where: str, params: Sequence[Any], order: str = "") -> list[DispatchIndexRow]:
        statement = SQL("SELECT " + INDEX_COLUMNS + " FROM {idx} q WHERE " + where + " " + order).format(
            idx=self.sql.index_table
        )
        return [DispatchIndexRow(**row) for row in self._select(statement, params)]

    def read_aggregates(self, aggregate_ids: Sequence[UUID], *, snapshots: bool) -> dict[UUID, list[StoredEvent]]:
        """The stored events of several aggregates in one query: each one's latest snapshot (when
        ``snapshots``), then its events after it, in order (an aggregate with none is left out)."""
        rows = self._select(self.sql.read_aggregates, {"ids": list(aggregate_ids), "snapshots": snapshots})
        found: dict[UUID, list[StoredEvent]] = {}
        for row in rows:
            stored = StoredEvent(row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"]))
            found.setdefault(row["originator_id"], []).append(stored)
        return found

    def current_versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        rows = self._select(self.sql.current_versions, [list(aggregate_ids)])
        found = {row["originator_id"]: row["version"] for row in rows}
        return {i: int(found.get(i, 0)) for i in aggregate_ids}

    def find_idempotency(self, key: str) -> IdempotencyRow | None:
        rows = self._select(self.sql.find_idempotency, [key])
        return IdempotencyRow(**rows[0]) if rows else None

    def ready_dispatches(self, now: int, limit: int) -> list[DispatchIndexRow]:
        return self._index_rows(
            "q.status = 'queued' AND q.available_at <= %s AND NOT EXISTS "
            "(SELECT 1 FROM {idx} c WHERE c.thread_id = q.thread_id AND c.status = 'claimed')",
            [now, limit],
            "ORDER BY priority, created_at, dispatch_id LIMIT %s",
        )

    def ready_threads(self, now: int, limit: int, *, runs: bool = False) -> list[ReadyThread]:
        """Threads a claim at ``now`` looks at: the best due heads, then threads due behind their head."""
        statement = self.sql.ready_threads_runs if runs else self.sql.ready_threads
        rows = self._select(statement, {"now": now, "limit": limit})
        return [ReadyThread(row["thread_id"], row["dispatch_id"], row["run_id"]) for row in rows]

    def ready_heads(self) -> list[ReadyHeadRow]:
        rows = self._select(
            SQL("SELECT " + HEAD_COLUMNS + " FROM {} ORDER BY thread_id").format(self.sql.heads_table), []
        )
        return [ReadyHeadRow(**row) for row in rows]

    def expired_claims(self, now: int, limit: int) -> list[DispatchIndexRow]:
        return self._index_rows(
            "status = 'claimed' AND lease_until < %s", [now, limit], "ORDER BY lease_until, dispatch_id LIMIT %s"
        )

    def thread_dispatches(self, thread_id: str) -> list[DispatchIndexRow]:
        return self._index_rows("thread_id = %s", [thread_id], "ORDER BY priority, created_at, dispatch_id")

    def all_dispatches(self) -> list[DispatchIndexRow]:
        return self._index_rows("TRUE", [], "ORDER BY dispatch_id")

    def count_by_status(self) -> dict[str, int]:
        rows = self._select(
            SQL("SELECT status, count(*) AS n FROM {} GROUP BY status").format(self.sql.index_table), []
        )
        return {row["status"]: row["n"] for row in rows}

    def dead_letters(self, page: DeadLetterPage) -> list[DispatchIndexRow]:
        where, params = page.where("%s")
        return self._index_rows(where, [*params, page.limit], page.ORDER + " LIMIT %s")
