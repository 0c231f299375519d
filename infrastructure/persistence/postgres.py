"""The Postgres application recorder, extended with the idempotency table and dispatch index.

Both are written by the ``_insert_events`` hook, inside the transaction that inserts the events
(before the events table lock; rows are touched in dispatch-id order so two writers cannot
deadlock). A duplicate idempotency key aborts the whole transaction.

The write path is this recorder's own, not the library's (eventsourcing 9.5.6 sends the whole
transaction through a psycopg pipeline). With psycopg 3.3's pipeline:

- a batch of several MB hangs for ever while holding the events table's EXCLUSIVE lock (psycopg
  stops flushing libpq's send buffer once its command queue is empty and waits for results the
  server cannot send before it has the rest of the message: see docs/decisions);
- a statement that psycopg prepares automatically (after 5 uses) in a pipeline aborted by an earlier
  error (a duplicate key in the hook, a lock timeout) is remembered as prepared although the server
  skipped it: every later use on that connection fails with "prepared statement does not exist";
- an exception raised in Python after the hook ran (building the events) was caught inside the
  library's transaction block, which then committed the hook's rows without the events.

Here a write is one plain transaction: ``SET LOCAL`` timeouts, the hook, then ``LOCK TABLE ... IN
EXCLUSIVE MODE; NOTIFY`` in one round trip, the insert (events in binary), commit. Each statement is flushed completely
before its result is read, any exception rolls everything back, and failures reach the caller as
the mailbox's typed errors (see ``pg_errors``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import Notification, StoredEvent
from eventsourcing.postgres import PgStoredEvent, PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal

from run_mailbox.infrastructure.persistence.pg_errors import StorePolicy
from run_mailbox.infrastructure.persistence.rows import (
    INDEX_COLUMNS,
    DispatchIndexRow,
    IdempotencyRow,
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
        base = events_table_name.removesuffix("_events")
        self.idempotency_table = f"{base}_idempotency"
        self.index_table = f"{base}_dispatch_index"
        schema = Identifier(datastore.schema)
        idem = Identifier(self.idempotency_table)
        idx = Identifier(self.index_table)
        self._idem = SQL("{}.{}").format(schema, idem)
        self._idx = SQL("{}.{}").format(schema, idx)
        self.sql_create_statements.extend(
            [
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, command text NOT NULL, "
                    "digest text NOT NULL, result text NOT NULL)"
                ).format(self._idem),
                SQL(
                    "CREATE TABLE IF NOT EXISTS {} (dispatch_id text PRIMARY KEY, thread_id text NOT NULL, "
                    "run_id text NOT NULL, status text NOT NULL, priority integer NOT NULL, "
                    "created_at bigint NOT NULL, available_at bigint NOT NULL, lease_until bigint, "
                    "updated_at bigint NOT NULL)"
                ).format(self._idx),
                SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON {} (priority, created_at, dispatch_id) WHERE status = 'queued'"
                ).format(Identifier(f"{self.index_table}_ready"), self._idx),
                SQL("CREATE INDEX IF NOT EXISTS {} ON {} (lease_until) WHERE status = 'claimed'").format(
                    Identifier(f"{self.index_table}_leases"), self._idx
                ),
                SQL("CREATE INDEX IF NOT EXISTS {} ON {} (thread_id)").format(
                    Identifier(f"{self.index_table}_thread"), self._idx
                ),
            ]
        )
        self._insert_idem = SQL("INSERT INTO {} (key, command, digest, result) VALUES (%s, %s, %s, %s)").format(
            self._idem
        )
        # One statement for all rows (executemany would run its own pipeline).
        self._upsert_index = SQL(
            "INSERT INTO {} (" + INDEX_COLUMNS + ") SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
            "%s::text[], %s::integer[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "
            "ON CONFLICT (dispatch_id) DO UPDATE SET status = EXCLUDED.status, "
            "priority = EXCLUDED.priority, available_at = EXCLUDED.available_at, "
            "lease_until = EXCLUDED.lease_until, updated_at = EXCLUDED.updated_at"
        ).format(self._idx)
        self._lock_and_notify = SQL("LOCK TABLE {}.{} IN EXCLUSIVE MODE; NOTIFY {}").format(
            schema, Identifier(self.events_table_name), Identifier(self.channel_name)
        )
        # The library's statement, with the events sent in binary (%b): half the bytes of the hex text
        # form, parsed about 4x faster by the server, which holds the events lock meanwhile.
        self.insert_events_statement = SQL(
            "INSERT INTO {}.{} AS t (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM unnest(%b::{}.{}[]) "
            "RETURNING notification_id"
        ).format(schema, Identifier(self.events_table_name), schema, Identifier(self.stored_event_type_name))
        self.policy = StorePolicy(datastore)
        self.configure(StoreTimeouts())

    def configure(self, timeouts: StoreTimeouts) -> None:
        """Sets the timeouts of the write transactions."""
        self.timeouts = timeouts
        self._set_timeouts = SQL(
            "SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}; "
            "SET LOCAL idle_in_transaction_session_timeout = {}"
        ).format(
            Literal(f"{timeouts.lock_ms}ms"),
            Literal(f"{timeouts.statement_ms}ms"),
            Literal(f"{timeouts.idle_in_transaction_ms}ms"),
        )

    def create_table(self) -> None:
        # Fast path: a service starting beside running writers must not take the locks of
        # CREATE ... IF NOT EXISTS (they deadlock against the insert path's locks).
        if self._tables_exist():
            self.datastore.register_type_adapters()
            return
        super().create_table()

    def _tables_exist(self) -> bool:
        names = [self.events_table_name, self.idempotency_table, self.index_table]
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT bool_and(to_regclass(format('%%I.%%I', %(schema)s::text, n)) IS NOT NULL) AS ok, "
                "to_regtype(format('%%I.%%I', %(schema)s::text, %(type)s::text)) IS NOT NULL AS typed "
                "FROM unnest(%(names)s::text[]) AS n",
                {"schema": self.datastore.schema, "type": self.stored_event_type_name, "names": names},
            )
            row = curs.fetchone()
        return bool(row and row["ok"] and row["typed"])

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Several processes starting at once would race on CREATE ... IF NOT EXISTS and
        # CREATE OR REPLACE FUNCTION ("tuple concurrently updated"): take turns.
        lock_name = Literal(f"{self.datastore.schema}.{self.events_table_name}")
        curs.execute(SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(lock_name))
        super()._create_table(curs)

    def _call(self, operation: str, attempt: Callable[[], T]) -> T:
        return self.policy.call(operation, attempt)

    # ------------------------------------------------------------------ writes

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        # Built before the transaction: a failure here leaves nothing behind and holds no lock.
        rows = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        return self._call("write", lambda: self._write(stored_events, rows, **kwargs))

    def _write(
        self, stored_events: Sequence[StoredEvent], rows: list[PgStoredEvent], **kwargs: Any
    ) -> list[int] | None:
        with self.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
            curs.execute(self._set_timeouts, prepare=False)
            self._insert_events(curs, stored_events, **kwargs)
            if not rows:
                return None
            curs.execute(self._lock_and_notify, prepare=False)
            curs.execute(self.insert_events_statement, (rows,))
            return [row["notification_id"] for row in curs.fetchall()]

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> None:
        idempotency: IdempotencyRow | None = kwargs.get("idempotency")
        if idempotency is not None:
            curs.execute(
                self._insert_idem,
                (idempotency.key, idempotency.command, idempotency.digest, idempotency.result),
            )
        rows = sorted_index_rows(kwargs.get("index_rows"))
        if rows:
            curs.execute(
                self._upsert_index, [list(column) for column in zip(*(r.as_tuple() for r in rows), strict=True)]
            )

    # ------------------------------------------------------------------ the library's reads, typed

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

    # ------------------------------------------------------------------ reads

    def _select(self, statement: Composed, params: Sequence[Any]) -> list[dict[str, Any]]:
        def attempt() -> list[dict[str, Any]]:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(statement, params, prepare=True)
                return list(curs.fetchall())

        return self._call("read", attempt)

    def _index_rows(self, where: str, params: Sequence[Any], order: str = "") -> list[DispatchIndexRow]:
        statement = SQL("SELECT " + INDEX_COLUMNS + " FROM {idx} q WHERE " + where + " " + order).format(idx=self._idx)
        return [DispatchIndexRow(**row) for row in self._select(statement, params)]

    def find_idempotency(self, key: str) -> IdempotencyRow | None:
        rows = self._select(SQL("SELECT key, command, digest, result FROM {} WHERE key = %s").format(self._idem), [key])
        return IdempotencyRow(**rows[0]) if rows else None

    def ready_dispatches(self, now: int, limit: int) -> list[DispatchIndexRow]:
        return self._index_rows(
            "q.status = 'queued' AND q.available_at <= %s AND NOT EXISTS "
            "(SELECT 1 FROM {idx} c WHERE c.thread_id = q.thread_id AND c.status = 'claimed')",
            [now, limit],
            "ORDER BY priority, created_at, dispatch_id LIMIT %s",
        )

    def ready_threads(self, now: int, limit: int) -> list[DispatchIndexRow]:
        """The best ready dispatch of each thread without a claim, best first."""
        statement = SQL(
            "SELECT " + INDEX_COLUMNS + " FROM (SELECT " + INDEX_COLUMNS + ", row_number() OVER "
            "(PARTITION BY thread_id ORDER BY priority, created_at, dispatch_id) AS rank FROM {idx} q "
            "WHERE q.status = 'queued' AND q.available_at <= %s AND NOT EXISTS "
            "(SELECT 1 FROM {idx} c WHERE c.thread_id = q.thread_id AND c.status = 'claimed')) best "
            "WHERE rank = 1 ORDER BY priority, created_at, dispatch_id LIMIT %s"
        ).format(idx=self._idx)
        return [DispatchIndexRow(**row) for row in self._select(statement, [now, limit])]

    def expired_claims(self, now: int, limit: int) -> list[DispatchIndexRow]:
        return self._index_rows(
            "status = 'claimed' AND lease_until < %s", [now, limit], "ORDER BY lease_until, dispatch_id LIMIT %s"
        )

    def thread_dispatches(self, thread_id: str) -> list[DispatchIndexRow]:
        return self._index_rows("thread_id = %s", [thread_id], "ORDER BY priority, created_at, dispatch_id")

    def all_dispatches(self) -> list[DispatchIndexRow]:
        return self._index_rows("TRUE", [], "ORDER BY dispatch_id")

    def count_by_status(self) -> dict[str, int]:
        rows = self._select(SQL("SELECT status, count(*) AS n FROM {} GROUP BY status").format(self._idx), [])
        return {row["status"]: row["n"] for row in rows}
