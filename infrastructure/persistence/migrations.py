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


def _pg_v4(n: Any) -> list[str]:
    """A whole write in one statement (one round trip, its own transaction): take the events table's
    lock (waiting at most ``lock_ms``), announce the insert, check the versions of the aggregates the
    command only read, write the side rows, insert the events and return their notification ids.
    The side rows come as one JSON document (``side``), which the server unpacks faster than the
    driver dumps a score of typed arrays."""
    return _write_function(n, "thread_id IN (SELECT jsonb_array_elements_text(side->'gone'))")


_GONE_BY_KEY = "thread_id = ANY(ARRAY(SELECT jsonb_array_elements_text(side->'gone')))"
"""Busy threads' ready heads, found through the heads' primary key (migration 5)."""


def _pg_v5(n: Any) -> list[str]:
    """The write deletes the ready heads of threads that became busy through the heads' primary key:
    ``IN (SELECT jsonb_array_elements_text(...))`` was planned as a hash join over a sequential scan of
    every head (4.5 ms with 20,000 idle threads, on every claim), ``= ANY(ARRAY(...))`` is an index scan."""
    return _write_function(n, _GONE_BY_KEY)


def _pg_v6(n: Any) -> list[str]:
    """Before it takes the table's lock, the write looks up the aggregates the command presumed new
    without reading them (``side->'new'``: a submit's mailbox on a thread the service had not seen)
    and refuses the write as a conflict if any has events: the wrong guess costs an index probe, not
    a failed insert under the lock that every other writer waits for. One probe per id: a single
    ``= ANY(...)`` over them all was planned as a sequential scan of the events (0.5-0.7 ms a submit
    in a benchmark of a few thousand events)."""
    presumed = f"""
            FOR presumed IN SELECT (jsonb_array_elements_text(side->'new'))::uuid LOOP
                IF EXISTS (SELECT 1 FROM {n.table("events")} WHERE originator_id = presumed) THEN
                    RAISE EXCEPTION 'aggregate % was presumed new but has events', presumed
                        USING ERRCODE = 'unique_violation';
                END IF;
            END LOOP;"""
    return _write_function(n, _GONE_BY_KEY, declare="\n        DECLARE presumed uuid;", first=presumed)


def _pg_v7(n: Any) -> list[str]:
    """The write's checks without a query of their own: the presumed-new probes and the read-version
    checks walk their JSON arrays by position (plpgsql evaluates ``side->'new'->>i`` itself, where a
    ``FOR ... IN SELECT`` opened a portal even for an empty array: about 15 us of every write), the
    read versions are checked in the write function instead of a second one, and the lock timeout is
    set by an assignment rather than a ``PERFORM`` (a whole query). The checks and their errors are
    those of migrations 2 and 6."""
    events = n.table("events")
    presumed = f"""
            FOR i IN 0 .. jsonb_array_length(side->'new') - 1 LOOP
                aggregate := (side->'new'->>i)::uuid;
                IF EXISTS (SELECT 1 FROM {events} WHERE originator_id = aggregate) THEN
                    RAISE EXCEPTION 'aggregate % was presumed new but has events', aggregate
                        USING ERRCODE = 'unique_violation';
                END IF;
            END LOOP;"""
    read = f"""
            FOR i IN 0 .. jsonb_array_length(side->'read') - 1 LOOP
                aggregate := (side->'read'->i->>0)::uuid;
                IF (side->'read'->i->>1)::integer <> coalesce(
                    (SELECT max(e.originator_version) FROM {events} e WHERE e.originator_id = aggregate), 0) THEN
                    RAISE EXCEPTION 'stale read of aggregate %: it changed since it was read', aggregate
                        USING ERRCODE = 'unique_violation';
                END IF;
            END LOOP;"""
    return _write_function(
        n,
        _GONE_BY_KEY,
        declare="\n        DECLARE aggregate uuid; setting text;",
        first=presumed,
        lock="setting := set_config('lock_timeout', lock_ms || 'ms', true);",
        read=read,
    )


_READ_V2 = """
            IF jsonb_array_length(side->'read') > 0 THEN
                PERFORM {check}(
                    ARRAY(SELECT (r->>0)::uuid FROM jsonb_array_elements(side->'read') AS r),
                    ARRAY(SELECT (r->>1)::integer FROM jsonb_array_elements(side->'read') AS r));
            END IF;"""


def _write_function(
    n: Any,
    gone: str,
    *,
    declare: str = "",
    first: str = "",
    lock: str = "PERFORM set_config('lock_timeout', lock_ms || 'ms', true);",
    read: str | None = None,
) -> list[str]:
    events, idx, heads = n.table("events"), n.table("dispatch_index"), n.table("ready_heads")
    if read is None:
        read = _READ_V2.format(check=n.table("assert_read_versions"))
    return [
        f"""CREATE OR REPLACE FUNCTION {n.table("write")}(
            lock_ms integer, events {n.table(n.stored_event_type_name, prefixed=False)}[], side jsonb)
        RETURNS SETOF bigint LANGUAGE plpgsql AS $${declare}
        BEGIN{first}
            {lock}
            LOCK TABLE {events} IN EXCLUSIVE MODE;
            NOTIFY {n.channel};{read}
            IF side->'idem' IS NOT NULL AND jsonb_typeof(side->'idem') = 'object' THEN
                INSERT INTO {n.table("idempotency")} (key, command, digest, result)
                SELECT * FROM jsonb_to_record(side->'idem') AS x(key text, command text, digest text, result text);
            END IF;
            IF jsonb_array_length(side->'index') > 0 THEN
                INSERT INTO {idx} (dispatch_id, thread_id, run_id, status, priority, created_at, available_at,
                    lease_until, updated_at)
                SELECT * FROM jsonb_to_recordset(side->'index') AS x(dispatch_id text, thread_id text, run_id text,
                    status text, priority integer, created_at bigint, available_at bigint, lease_until bigint,
                    updated_at bigint)
                ON CONFLICT (dispatch_id) DO UPDATE SET status = EXCLUDED.status, priority = EXCLUDED.priority,
                    available_at = EXCLUDED.available_at, lease_until = EXCLUDED.lease_until,
                    updated_at = EXCLUDED.updated_at;
            END IF;
            IF jsonb_array_length(side->'gone') > 0 THEN
                DELETE FROM {heads} WHERE {gone};
            END IF;
            IF jsonb_array_length(side->'heads') > 0 THEN
                INSERT INTO {heads} (thread_id, dispatch_id, priority, created_at, available_at, next_available_at)
                SELECT * FROM jsonb_to_recordset(side->'heads') AS x(thread_id text, dispatch_id text,
                    priority integer, created_at bigint, available_at bigint, next_available_at bigint)
                ON CONFLICT (thread_id) DO UPDATE SET dispatch_id = EXCLUDED.dispatch_id,
                    priority = EXCLUDED.priority, created_at = EXCLUDED.created_at,
                    available_at = EXCLUDED.available_at, next_available_at = EXCLUDED.next_available_at;
            END IF;
            RETURN QUERY INSERT INTO {events} AS t (originator_id, originator_version, topic, state)
                SELECT e.originator_id, e.originator_version, e.topic, e.state FROM unnest(events) AS e
                RETURNING t.notification_id;
        END $$"""
    ]


POSTGRES: tuple[Migration, ...] = (
    Migration(1, "idempotency keys and the dispatch index", _pg_v1),
    Migration(2, "the read-version check of a write transaction", _pg_v2),
    Migration(3, "ready heads: the best queued dispatch of every idle thread", _pg_v3),
    Migration(4, "a write in one statement", _pg_v4),
    Migration(5, "busy threads' ready heads deleted through the index", _pg_v5),
    Migration(6, "a write that presumed an aggregate new refused before the table's lock", _pg_v6),
    Migration(7, "the write's checks without queries of their own", _pg_v7),
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
