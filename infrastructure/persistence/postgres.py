"""The Postgres application recorder, extended with the idempotency table and dispatch index.

Both are written by the library's ``_insert_events`` hook, inside the transaction that inserts
the events. The hook takes the events table's lock first (the library would take it a moment
later), so every write runs alone from there on: the aggregates a command only read are then
checked to be still at the versions it read (``read_versions``; a stale one aborts the
transaction as a conflict), and the side rows are written. A duplicate idempotency key aborts
the whole transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal

from run_mailbox.infrastructure.persistence import migrations
from run_mailbox.infrastructure.persistence.rows import (
    INDEX_COLUMNS,
    DispatchIndexRow,
    IdempotencyRow,
    sorted_index_rows,
)


class PostgresMailboxRecorder(PostgresApplicationRecorder):
    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.table_prefix = events_table_name.removesuffix("_events")
        self._idem = self._qualified(f"{self.table_prefix}_idempotency")
        self._idx = self._qualified(f"{self.table_prefix}_dispatch_index")
        self._assert_versions = SQL("SELECT {}(%s::uuid[], %s::integer[])").format(
            self._qualified(f"{self.table_prefix}_assert_read_versions")
        )
        self._insert_idem = SQL("INSERT INTO {} (key, command, digest, result) VALUES (%s, %s, %s, %s)").format(
            self._idem
        )
        self._upsert_index = SQL(
            "INSERT INTO {} (" + INDEX_COLUMNS + ") VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (dispatch_id) DO UPDATE SET status = EXCLUDED.status, "
            "priority = EXCLUDED.priority, available_at = EXCLUDED.available_at, "
            "lease_until = EXCLUDED.lease_until, updated_at = EXCLUDED.updated_at"
        ).format(self._idx)

    # ------------------------------------------------------------------ schema

    def table(self, name: str) -> str:
        return self._qualified(f"{self.table_prefix}_{name}").as_string(None)

    def index(self, name: str) -> str:
        return Identifier(f"{self.table_prefix}_{name}").as_string(None)

    def _qualified(self, name: str) -> Composed:
        return SQL("{}.{}").format(Identifier(self.datastore.schema), Identifier(name))

    def create_table(self) -> None:
        # Fast path: a service starting beside running writers must not take the locks of
        # CREATE ... IF NOT EXISTS (they deadlock against the insert path's locks).
        if self._schema_version(recorded_only=True) == migrations.POSTGRES[-1].version:
            self.datastore.register_type_adapters()
            return
        super().create_table()

    def _schema_version(self, curs: Cursor[DictRow] | None = None, *, recorded_only: bool = False) -> int | None:
        """The version the database records; 1 for tables of 0.1.0 (no record, unless ``recorded_only``);
        None before any."""
        query = (
            "SELECT CASE WHEN to_regclass(%(versions)s) IS NOT NULL THEN -1 "
            "WHEN to_regclass(%(index)s) IS NOT NULL THEN 1 END AS found, "
            "to_regtype(%(type)s) IS NOT NULL AS typed"
        )
        params = {
            "versions": self.table("schema_version"),
            "index": self.table("dispatch_index"),
            "type": self._qualified(self.stored_event_type_name).as_string(None),
        }
        with contextlib.ExitStack() as stack:
            if curs is None:
                conn = stack.enter_context(self.datastore.get_connection())
                curs = stack.enter_context(conn.cursor())
            row = curs.execute(query, params).fetchone()
            if row is None or row["found"] is None or not row["typed"]:
                return None
            if row["found"] == 1 and recorded_only:
                return None
            if row["found"] == -1:
                recorded = curs.execute(
                    f"SELECT max(version) AS version FROM {self.table('schema_version')}"
                ).fetchone()
                return int(recorded["version"]) if recorded and recorded["version"] is not None else None
            return int(row["found"])

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Several processes starting at once would race on CREATE ... IF NOT EXISTS and
        # CREATE OR REPLACE FUNCTION ("tuple concurrently updated"): take turns.
        lock_name = Literal(f"{self.datastore.schema}.{self.events_table_name}")
        curs.execute(SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(lock_name))
        super()._create_table(curs)
        current = self._schema_version(curs) or 0
        for migration in migrations.after(migrations.POSTGRES, current):
            for statement in migration.statements(self):
                curs.execute(statement, prepare=False)
        versions = self.table("schema_version")
        curs.execute(f"CREATE TABLE IF NOT EXISTS {versions} (version integer NOT NULL)", prepare=False)
        curs.execute(f"DELETE FROM {versions}", prepare=False)
        curs.execute(f"INSERT INTO {versions} (version) VALUES (%s)", [migrations.POSTGRES[-1].version], prepare=False)

    # ------------------------------------------------------------------ writes

    def _insert_events(
        self,
        curs: Cursor[DictRow],
        stored_events: Sequence[StoredEvent],
        **kwargs: Any,
    ) -> None:
        self._lock_table(curs)
        read_versions: dict[UUID, int] = kwargs.get("read_versions") or {}
        if read_versions:
            curs.execute(self._assert_versions, (list(read_versions), list(read_versions.values())), prepare=True)
        idempotency: IdempotencyRow | None = kwargs.get("idempotency")
        if idempotency is not None:
            curs.execute(
                self._insert_idem,
                (idempotency.key, idempotency.command, idempotency.digest, idempotency.result),
            )
        rows = sorted_index_rows(kwargs.get("index_rows"))
        if rows:
            curs.executemany(self._upsert_index, [row.as_tuple() for row in rows])
        super()._insert_events(curs, stored_events, **kwargs)

    def current_versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        rows = self._select(
            SQL(
                "SELECT originator_id, max(originator_version) AS version FROM {} "
                "WHERE originator_id = ANY(%s) GROUP BY originator_id"
            ).format(self._qualified(self.events_table_name)),
            [list(aggregate_ids)],
        )
        found = {row["originator_id"]: row["version"] for row in rows}
        return {i: int(found.get(i, 0)) for i in aggregate_ids}

    def replace_dispatch_index(self, rows: list[DispatchIndexRow]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(self._idx))
            curs.execute(SQL("DELETE FROM {}").format(self._idx))
            ordered = sorted_index_rows(rows)
            if ordered:
                curs.executemany(self._upsert_index, [row.as_tuple() for row in ordered])

    # ------------------------------------------------------------------ reads

    def _select(self, statement: Composed, params: Sequence[Any]) -> list[dict[str, Any]]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return list(curs.fetchall())

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
