"""Forward migrations of the mailbox's own tables, with the schema version recorded in the database.

The library creates its events table itself; beside it the mailbox keeps an idempotency table and
the dispatch index, whose shapes change between versions. Each backend has an ordered list of
migrations; the database records the version it is at (``<prefix>_schema_version``), and a service
starting on it applies every later migration, in one transaction, under a lock, before it serves.
A database made by run-mailbox 0.1.0 (which recorded no version) is recognised as version 1.
Migrations only ever add: never edit one that was released; append the next.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from run_mailbox.infrastructure.persistence.pg_write_migrations import write_v4, write_v5, write_v6, write_v7


class Names(Protocol):
    """How a backend spells the mailbox's tables and indexes in SQL (quoted, qualified as it needs)."""

    def table(self, name: str) -> str: ...  # "idempotency" -> "public"."mailboxservice_idempotency"

    def index(self, name: str) -> str: ...  # an index's own name (never schema-qualified)


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: Callable[[Any], list[str]]
    """The SQL, given the backend's names (``Names``; the Postgres recorder itself on Postgres)."""


def _pg_v1(n: Names) -> list[str]:
    """run-mailbox 0.1.0: idempotency keys and the dispatch index."""
    idx = n.table("dispatch_index")
    return [
        f"CREATE TABLE IF NOT EXISTS {n.table('idempotency')} (key text PRIMARY KEY, command text NOT NULL, "
        "digest text NOT NULL, result text NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {idx} (dispatch_id text PRIMARY KEY, thread_id text NOT NULL, "
        "run_id text NOT NULL, status text NOT NULL, priority integer NOT NULL, created_at bigint NOT NULL, "
        "available_at bigint NOT NULL, lease_until bigint, updated_at bigint NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {n.index('dispatch_index_ready')} ON {idx} (priority, created_at, dispatch_id) "
        "WHERE status = 'queued'",
        f"CREATE INDEX IF NOT EXISTS {n.index('dispatch_index_leases')} ON {idx} (lease_until) "
        "WHERE status = 'claimed'",
        f"CREATE INDEX IF NOT EXISTS {n.index('dispatch_index_thread')} ON {idx} (thread_id)",
    ]


def _pg_v2(n: Names) -> list[str]:
    """A check, run inside a write transaction after the events table's lock, that the aggregates
    a command only read are still at the versions it read: a stale one aborts the transaction as a
    conflict (unique_violation), and the command runs again on fresh reads."""
    return [
        f"""CREATE OR REPLACE FUNCTION {n.table("assert_read_versions")}(ids uuid[], versions integer[])
        RETURNS void LANGUAGE plpgsql AS $$
        DECLARE stale uuid;
        BEGIN
            SELECT r.id INTO stale FROM unnest(ids, versions) AS r(id, version)
            WHERE r.version <> coalesce(
                (SELECT max(e.originator_version) FROM {n.table("events")} e WHERE e.originator_id = r.id), 0)
            LIMIT 1;
            IF stale IS NOT NULL THEN
                RAISE EXCEPTION 'stale read of aggregate %: it changed since it was read', stale
                    USING ERRCODE = 'unique_violation';
            END IF;
        END $$"""
    ]


def _heads_v3(n: Names, *, postgres: bool) -> list[str]:
    """The ready heads (see ``ready_heads``), filled from the dispatch index of the day."""
    heads, idx = n.table("ready_heads"), n.table("dispatch_index")
    text, big = ("text", "bigint") if postgres else ("TEXT", "INTEGER")
    return [
        f"CREATE TABLE IF NOT EXISTS {heads} (thread_id {text} PRIMARY KEY, dispatch_id {text} NOT NULL, "
        f"priority integer NOT NULL, created_at {big} NOT NULL, available_at {big} NOT NULL, "
        f"next_available_at {big} NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS {n.index('ready_heads_order')} ON {heads} (priority, created_at, dispatch_id)",
        f"CREATE INDEX IF NOT EXISTS {n.index('ready_heads_behind')} ON {heads} (next_available_at) "
        "WHERE next_available_at < available_at",
        f"INSERT INTO {heads} (thread_id, dispatch_id, priority, created_at, available_at, next_available_at) "
        "SELECT thread_id, dispatch_id, priority, created_at, available_at, next_available_at FROM ("
        "SELECT q.thread_id, q.dispatch_id, q.priority, q.created_at, q.available_at, "
        "min(q.available_at) OVER (PARTITION BY q.thread_id) AS next_available_at, "
        "row_number() OVER (PARTITION BY q.thread_id ORDER BY q.priority, q.created_at, q.dispatch_id) AS rank "
        f"FROM {idx} q WHERE q.status = 'queued' AND NOT EXISTS "
        f"(SELECT 1 FROM {idx} c WHERE c.thread_id = q.thread_id AND c.status = 'claimed')) best WHERE rank = 1",
    ]


def _pg_v3(n: Names) -> list[str]:
    return _heads_v3(n, postgres=True)


def _sqlite_v3(n: Names) -> list[str]:
    return _heads_v3(n, postgres=False)


def _heads_due_behind(n: Any, old_index: str) -> list[str]:
    """The threads due behind a delayed head (a claim's second look) in the order a claim takes them:
    the partial index on ``next_available_at`` left the planner a choice, and without fresh statistics
    (a new store, or autovacuum off or behind) it walked the heads' order index instead, filtering
    every head out one by one: a claim's cost grew with the queued threads and with every dead head
    row. An index with the same predicate in the claim's order is taken whatever the statistics say."""
    heads = n.table("ready_heads")
    return [
        f"DROP INDEX IF EXISTS {old_index}",
        f"CREATE INDEX IF NOT EXISTS {n.index('ready_heads_due_behind')} ON {heads} "
        "(priority, created_at, dispatch_id) WHERE next_available_at < available_at",
    ]


def _pg_v8(n: Any) -> list[str]:
    return _heads_due_behind(n, n.table("ready_heads_behind"))  # an index's qualified name, spelt as a table's


def _sqlite_v4(n: Names) -> list[str]:
    return _heads_due_behind(n, n.index("ready_heads_behind"))


def _dead_letters_in_page_order(n: Names) -> list[str]:
    """Dead letters in the order their pages list them (``DeadLetterPage``: oldest first, then by id):
    a page, and every ``redrive_many`` through it, read the whole dispatch index before. (SQLite finds
    them through its ``(status, lease_until)`` index already.)"""
    return [
        f"CREATE INDEX IF NOT EXISTS {n.index('dispatch_index_dead_letters')} ON {n.table('dispatch_index')} "
        "(updated_at, dispatch_id) WHERE status = 'dead_letter'"
    ]


POSTGRES: tuple[Migration, ...] = (
    Migration(1, "idempotency keys and the dispatch index", _pg_v1),
    Migration(2, "the read-version check of a write transaction", _pg_v2),
    Migration(3, "ready heads: the best queued dispatch of every idle thread", _pg_v3),
    Migration(4, "a write in one statement", write_v4),
    Migration(5, "busy threads' ready heads deleted through the index", write_v5),
    Migration(6, "a write that presumed an aggregate new refused before the table's lock", write_v6),
    Migration(7, "the write's checks without queries of their own", write_v7),
    Migration(8, "the threads due behind a delayed head indexed in claim order", _pg_v8),
    Migration(9, "dead letters indexed in page order", _dead_letters_in_page_order),
)


def _sqlite_v1(n: Names) -> list[str]:
    """run-mailbox 0.1.0 named the tables ``mailbox_*`` whatever the prefix."""
    return [
        "CREATE TABLE IF NOT EXISTS mailbox_idempotency (key TEXT PRIMARY KEY, command TEXT NOT NULL, "
        "digest TEXT NOT NULL, result TEXT NOT NULL)",
        "CREATE TABLE IF NOT EXISTS mailbox_dispatch_index (dispatch_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, "
        "run_id TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL, "
        "created_at INTEGER NOT NULL, available_at INTEGER NOT NULL, lease_until INTEGER, "
        "updated_at INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS mailbox_dispatch_index_ready ON mailbox_dispatch_index "
        "(status, priority, created_at)",
        "CREATE INDEX IF NOT EXISTS mailbox_dispatch_index_leases ON mailbox_dispatch_index (status, lease_until)",
        "CREATE INDEX IF NOT EXISTS mailbox_dispatch_index_thread ON mailbox_dispatch_index (thread_id)",
    ]


def _sqlite_v2(n: Names) -> list[str]:
    """The side tables take the application's prefix, as on Postgres."""
    idx = n.table("dispatch_index")
    return [
        f"ALTER TABLE mailbox_idempotency RENAME TO {n.table('idempotency')}",
        f"ALTER TABLE mailbox_dispatch_index RENAME TO {idx}",
        "DROP INDEX mailbox_dispatch_index_ready",
        "DROP INDEX mailbox_dispatch_index_leases",
        "DROP INDEX mailbox_dispatch_index_thread",
        f"CREATE INDEX {n.index('dispatch_index_ready')} ON {idx} (status, priority, created_at)",
        f"CREATE INDEX {n.index('dispatch_index_leases')} ON {idx} (status, lease_until)",
        f"CREATE INDEX {n.index('dispatch_index_thread')} ON {idx} (thread_id)",
    ]


SQLITE: tuple[Migration, ...] = (
    Migration(1, "idempotency keys and the dispatch index", _sqlite_v1),
    Migration(2, "side tables named after the application", _sqlite_v2),
    Migration(3, "ready heads: the best queued dispatch of every idle thread", _sqlite_v3),
    Migration(4, "the threads due behind a delayed head indexed in claim order", _sqlite_v4),
)


def after(migrations: tuple[Migration, ...], version: int) -> list[Migration]:
    """The migrations to apply to a database at ``version``, in order; refuses a newer database."""
    latest = migrations[-1].version
    if version > latest:
        raise SchemaTooNew(version, latest)
    return [m for m in migrations if m.version > version]


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer run-mailbox than this one."""

    def __init__(self, found: int, latest: int) -> None:
        super().__init__(
            f"the mailbox tables are at schema version {found}, this run-mailbox knows up to {latest}: upgrade it"
        )
