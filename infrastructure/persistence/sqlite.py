"""The SQLite application recorder, extended with the idempotency table and dispatch index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteDatastore

from run_mailbox.infrastructure.persistence import migrations
from run_mailbox.infrastructure.persistence.ready_heads import HEAD_COLUMNS, ReadyHeadRow, heads_of_index
from run_mailbox.infrastructure.persistence.rows import (
    INDEX_COLUMNS,
    DeadLetterPage,
    DispatchIndexRow,
    IdempotencyRow,
    ReadyThread,
    sorted_index_rows,
)

# SQLite's events table is always ``stored_events``; the side tables take the default application's
# name, as they do on Postgres (``<application name>_*``).
PREFIX = "mailboxservice"
IDEM = f"{PREFIX}_idempotency"
IDX = f"{PREFIX}_dispatch_index"
HEADS = f"{PREFIX}_ready_heads"
VERSIONS = f"{PREFIX}_schema_version"


class SQLiteMailboxRecorder(SQLiteApplicationRecorder):
    def __init__(self, datastore: SQLiteDatastore, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name)

    def table(self, name: str) -> str:
        return f"{PREFIX}_{name}"

    def index(self, name: str) -> str:
        return f"{PREFIX}_{name}"

    def _create_table(self, c: SQLiteCursor) -> None:
        super()._create_table(c)
        c.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN (?, ?, ?)",
            (VERSIONS, "mailbox_dispatch_index", IDX),
        )
        names = {row[0] for row in c.fetchall()}
        if VERSIONS in names:
            c.execute(f"SELECT max(version) FROM {VERSIONS}")
            current = int(c.fetchone()[0] or 0)
        else:  # 0.1.0 recorded no version; its tables were named mailbox_*
            current = 1 if "mailbox_dispatch_index" in names else 0
        for migration in migrations.after(migrations.SQLITE, current):
            for statement in migration.statements(self):
                c.execute(statement)
        c.execute(f"CREATE TABLE IF NOT EXISTS {VERSIONS} (version INTEGER NOT NULL)")
        c.execute(f"DELETE FROM {VERSIONS}")
        c.execute(f"INSERT INTO {VERSIONS} (version) VALUES (?)", (migrations.SQLITE[-1].version,))

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        read_versions: dict[UUID, int] = kwargs.get("read_versions") or {}
        if read_versions:  # inside the write transaction: no other writer can move them now
            current = self._versions(c, list(read_versions))
            stale = [i for i, v in read_versions.items() if current.get(i, 0) != v]
            if stale:
                raise IntegrityError(f"stale read of aggregate {stale[0]}: it changed since it was read")
        idempotency: IdempotencyRow | None = kwargs.get("idempotency")
        if idempotency is not None:
            c.execute(
                f"INSERT INTO {IDEM} (key, command, digest, result) VALUES (?, ?, ?, ?)",
                (idempotency.key, idempotency.command, idempotency.digest, idempotency.result),
            )
        for row in sorted_index_rows(kwargs.get("index_rows")):
            c.execute(
                f"INSERT OR REPLACE INTO {IDX} ({INDEX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row.as_tuple(),
            )
        self._write_heads(c, kwargs.get("head_rows") or {})
        return super()._insert_events(c, stored_events, **kwargs)

    def _versions(self, c: SQLiteCursor, aggregate_ids: list[UUID]) -> dict[UUID, int]:
        marks = ", ".join("?" * len(aggregate_ids))
        c.execute(
            f"SELECT originator_id, max(originator_version) FROM {self.events_table_name} "
            f"WHERE originator_id IN ({marks}) GROUP BY originator_id",
            [i.hex for i in aggregate_ids],  # the library stores UUIDs as their hex
        )
        return {UUID(hex=row[0]): int(row[1]) for row in c.fetchall()}

    def current_versions(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, int]:
        with self.datastore.transaction(commit=False) as c:
            found = self._versions(c, list(aggregate_ids))
        return {i: found.get(i, 0) for i in aggregate_ids}

    def _write_heads(self, c: SQLiteCursor, heads: dict[str, ReadyHeadRow | None]) -> None:
        for thread_id in sorted(heads):
            head = heads[thread_id]
            if head is None:
                c.execute(f"DELETE FROM {HEADS} WHERE thread_id = ?", (thread_id,))
            else:
                c.execute(f"INSERT OR REPLACE INTO {HEADS} ({HEAD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", head.as_tuple())

    def replace_dispatch_index(self, rows: list[DispatchIndexRow]) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"DELETE FROM {IDX}")
            for row in sorted_index_rows(rows):
                c.execute(f"INSERT INTO {IDX} ({INDEX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row.as_tuple())
            c.execute(f"DELETE FROM {HEADS}")
            self._write_heads(c, {head.thread_id: head for head in heads_of_index(rows)})

    def _select(self, statement: str, params: Sequence[Any]) -> list[Any]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return list(c.fetchall())

    def _index_rows(self, where: str, params: Sequence[Any], order: str = "") -> list[DispatchIndexRow]:
        rows = self._select(f"SELECT {INDEX_COLUMNS} FROM {IDX} q WHERE {where} {order}", params)
        return [DispatchIndexRow(*tuple(row)) for row in rows]

    def find_idempotency(self, key: str) -> IdempotencyRow | None:
        rows = self._select(f"SELECT key, command, digest, result FROM {IDEM} WHERE key = ?", [key])
        return IdempotencyRow(*tuple(rows[0])) if rows else None

    def ready_dispatches(self, now: int, limit: int) -> list[DispatchIndexRow]:
        return self._index_rows(
            "q.status = 'queued' AND q.available_at <= ? AND NOT EXISTS "
            f"(SELECT 1 FROM {IDX} c WHERE c.thread_id = q.thread_id AND c.status = 'claimed')",
            [now, limit],
            "ORDER BY priority, created_at, dispatch_id LIMIT ?",
        )

    def ready_threads(self, now: int, limit: int, *, runs: bool = False) -> list[ReadyThread]:
        """Threads a claim at ``now`` looks at: the best due heads, then threads due behind their head."""
        rows = self._select(ready_threads_sql(runs=runs), [now, limit, now, now, limit])
        return [ReadyThread(row[0], row[1], row[2]) for row in rows]

    def ready_heads(self) -> list[ReadyHeadRow]:
        rows = self._select(f"SELECT {HEAD_COLUMNS} FROM {HEADS} ORDER BY thread_id", [])
        return [ReadyHeadRow(*tuple(row)) for row in rows]

    def expired_claims(self, now: int, limit: int) -> list[DispatchIndexRow]:
        return self._index_rows(
            "status = 'claimed' AND lease_until < ?", [now, limit], "ORDER BY lease_until, dispatch_id LIMIT ?"
        )

    def thread_dispatches(self, thread_id: str) -> list[DispatchIndexRow]:
        return self._index_rows("thread_id = ?", [thread_id], "ORDER BY priority, created_at, dispatch_id")

    def all_dispatches(self) -> list[DispatchIndexRow]:
        return self._index_rows("1 = 1", [], "ORDER BY dispatch_id")

    def count_by_status(self) -> dict[str, int]:
        return {row[0]: row[1] for row in self._select(f"SELECT status, count(*) FROM {IDX} GROUP BY status", [])}

    def dead_letters(self, page: DeadLetterPage) -> list[DispatchIndexRow]:
        where, params = page.where("?")
        return self._index_rows(where, [*params, page.limit], page.ORDER + " LIMIT ?")


def ready_threads_sql(*, runs: bool) -> str:
    """The claim's read of the ready heads (parameters: now, limit, now, now, limit)."""
    run = f"(SELECT run_id FROM {IDX} i WHERE i.dispatch_id = c.dispatch_id)" if runs else "NULL"
    return (
        f"SELECT c.thread_id, c.dispatch_id, {run} FROM ("
        f"SELECT thread_id, dispatch_id FROM (SELECT thread_id, dispatch_id FROM {HEADS} WHERE available_at <= ? "
        "ORDER BY priority, created_at, dispatch_id LIMIT ?) UNION ALL "
        f"SELECT thread_id, dispatch_id FROM (SELECT thread_id, dispatch_id FROM {HEADS} "
        "WHERE next_available_at < available_at AND next_available_at <= ? AND available_at > ? "
        "ORDER BY priority, created_at, dispatch_id LIMIT ?)) c"
    )
