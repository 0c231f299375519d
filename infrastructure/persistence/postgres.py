"""The Postgres application recorder, extended with the idempotency table and dispatch index.

Both are written by the library's ``_insert_events`` hook, inside the transaction that
inserts the events (before the events table lock; rows are touched in dispatch-id order so
two writers cannot deadlock). A duplicate idempotency key aborts the whole transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Composed, Identifier, Literal

from run_mailbox.infrastructure.persistence.rows import (
    INDEX_COLUMNS,
    DispatchIndexRow,
    IdempotencyRow,
    sorted_index_rows,
)


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
        self._upsert_index = SQL(
            "INSERT INTO {} (" + INDEX_COLUMNS + ") VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (dispatch_id) DO UPDATE SET status = EXCLUDED.status, "
            "priority = EXCLUDED.priority, available_at = EXCLUDED.available_at, "
            "lease_until = EXCLUDED.lease_until, updated_at = EXCLUDED.updated_at"
        ).format(self._idx)

    def create_table(self) -> None:
        # Fast path: a service starting beside running writers must not take the locks of
        # CREATE ... IF NOT EXISTS (they deadlock against the insert path's locks).
        if self._tables_exist():
            self.datastore.register_type_adapters()
            return
        super().create_table()

    def _tables_exist(self) -> bool:
        names = [self.events_table_name, self.idempotency_table, self.index_table]
        qualified = [f"{self.datastore.schema}.{name}" for name in names]
        type_name = f"{self.datastore.schema}.{self.stored_event_type_name}"
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(
                "SELECT bool_and(to_regclass(n) IS NOT NULL) AS ok, to_regtype(%s) IS NOT NULL AS typed "
                "FROM unnest(%s::text[]) AS n",
                [type_name, qualified],
            )
            row = curs.fetchone()
        return bool(row and row["ok"] and row["typed"])

    def _create_table(self, curs: Cursor[DictRow]) -> None:
        # Several processes starting at once would race on CREATE ... IF NOT EXISTS and
        # CREATE OR REPLACE FUNCTION ("tuple concurrently updated"): take turns.
        lock_name = Literal(f"{self.datastore.schema}.{self.events_table_name}")
        curs.execute(SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(lock_name))
        super()._create_table(curs)

    # ------------------------------------------------------------------ writes

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
            curs.executemany(self._upsert_index, [row.as_tuple() for row in rows])

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
