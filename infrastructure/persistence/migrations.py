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
from typing import Protocol


class Names(Protocol):
    """How a backend spells the mailbox's tables and indexes in SQL (quoted, qualified as it needs)."""

    def table(self, name: str) -> str: ...  # "idempotency" -> "public"."mailboxservice_idempotency"

    def index(self, name: str) -> str: ...  # an index's own name (never schema-qualified)


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: Callable[[Names], list[str]]


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


POSTGRES: tuple[Migration, ...] = (
    Migration(1, "idempotency keys and the dispatch index", _pg_v1),
    Migration(2, "the read-version check of a write transaction", _pg_v2),
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
