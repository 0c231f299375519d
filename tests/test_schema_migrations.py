"""A database made by an earlier run-mailbox is migrated forward when a service starts on it.

The old tables are made here with the DDL run-mailbox 0.1.0 ran (copied from its source, not
from the migrations under test), holding the 0.1.0 golden log and its side rows.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteDatastore
from psycopg import sql

from run_mailbox.domain.values import RunStatus
from run_mailbox.infrastructure.persistence import migrations
from run_mailbox.infrastructure.persistence.migrations import SchemaTooNew
from run_mailbox.infrastructure.service import MailboxService

GOLDEN = Path(__file__).parent / "golden" / "legacy-0.1.0"

SQLITE_0_1_0 = [
    "CREATE TABLE IF NOT EXISTS mailbox_idempotency (key TEXT PRIMARY KEY, command TEXT NOT NULL, "
    "digest TEXT NOT NULL, result TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mailbox_dispatch_index (dispatch_id TEXT PRIMARY KEY, thread_id TEXT NOT NULL, "
    "run_id TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL, created_at INTEGER NOT NULL, "
    "available_at INTEGER NOT NULL, lease_until INTEGER, updated_at INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mailbox_dispatch_index_ready ON mailbox_dispatch_index (status, priority, created_at)",
    "CREATE INDEX IF NOT EXISTS mailbox_dispatch_index_leases ON mailbox_dispatch_index (status, lease_until)",
    "CREATE INDEX IF NOT EXISTS mailbox_dispatch_index_thread ON mailbox_dispatch_index (thread_id)",
]

POSTGRES_0_1_0 = [
    "CREATE TABLE IF NOT EXISTS {s}.mailboxservice_idempotency (key text PRIMARY KEY, command text NOT NULL, "
    "digest text NOT NULL, result text NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {s}.mailboxservice_dispatch_index (dispatch_id text PRIMARY KEY, thread_id text "
    "NOT NULL, run_id text NOT NULL, status text NOT NULL, priority integer NOT NULL, created_at bigint NOT NULL, "
    "available_at bigint NOT NULL, lease_until bigint, updated_at bigint NOT NULL)",
    "CREATE INDEX IF NOT EXISTS mailboxservice_dispatch_index_ready ON {s}.mailboxservice_dispatch_index "
    "(priority, created_at, dispatch_id) WHERE status = 'queued'",
    "CREATE INDEX IF NOT EXISTS mailboxservice_dispatch_index_leases ON {s}.mailboxservice_dispatch_index "
    "(lease_until) WHERE status = 'claimed'",
    "CREATE INDEX IF NOT EXISTS mailboxservice_dispatch_index_thread ON {s}.mailboxservice_dispatch_index (thread_id)",
]
IDEMPOTENCY_ROW = ("old-key", "ack", "digest", '{"dispatch_id":"x"}')


def golden_events() -> list[StoredEvent]:
    with gzip.open(GOLDEN / "events.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [
        StoredEvent(UUID(r["originator_id"]), r["originator_version"], r["topic"], r["state"].encode()) for r in rows
    ]


def index_rows(service: MailboxService) -> list[tuple]:
    """The dispatch index as the golden log's aggregates give it (what 0.1.0 kept beside them)."""
    service.rebuild_dispatch_index()
    return [row.as_tuple() for row in service.tables.all_dispatches()]


def check_migrated(service: MailboxService, rows: list[tuple]) -> None:
    assert [row.as_tuple() for row in service.tables.all_dispatches()] == rows, "the old index rows are kept"
    assert service.tables.find_idempotency("old-key") is not None, "the old idempotency rows are kept"
    thread = "golden-thread"
    assert [d.dispatch_id for d in service.list_dispatches(thread)], "the index answers queries"
    service.submit(thread, "run-after-migration", now=20_000_000_000_000)
    claimed = service.claim(thread, consumer_id="w", now=20_000_000_000_001)
    assert claimed is not None and claimed.run_id == "run-after-migration"


def test_a_sqlite_file_made_by_0_1_0_is_migrated_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}) as scratch:
        scratch.recorder.insert_events(golden_events())
        rows = index_rows(scratch)
    datastore = SQLiteDatastore(str(path))
    old = SQLiteApplicationRecorder(datastore)
    old.create_table()  # the library's own DDL, as 0.1.0 ran it first
    old.insert_events(golden_events())
    datastore.close()
    conn = sqlite3.connect(path)
    for statement in SQLITE_0_1_0:
        conn.execute(statement)
    conn.executemany("INSERT INTO mailbox_dispatch_index VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("INSERT INTO mailbox_idempotency VALUES (?, ?, ?, ?)", IDEMPOTENCY_ROW)
    conn.commit()
    conn.close()
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    with MailboxService(env=env) as service:
        check_migrated(service, rows)
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"mailboxservice_idempotency", "mailboxservice_dispatch_index"} <= tables
    assert not {"mailbox_idempotency", "mailbox_dispatch_index"} & tables
    version = sqlite3.connect(path).execute("SELECT version FROM mailboxservice_schema_version").fetchall()
    assert version == [(migrations.SQLITE[-1].version,)]
    with MailboxService(env=env) as again:  # a migrated file opens as it is
        assert len(again.tables.all_dispatches()) == len(rows) + 1


@pytest.mark.postgres
def test_a_postgres_schema_made_by_0_1_0_is_migrated_and_keeps_its_rows(postgres_env, postgres_url):
    schema = postgres_env["POSTGRES_SCHEMA"]
    with MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}) as scratch:
        scratch.recorder.insert_events(golden_events())
        rows = index_rows(scratch)
    datastore = PostgresDatastore(
        dbname=postgres_url.rsplit("/", 1)[1],
        host="127.0.0.1",
        port="5432",
        user="postgres",
        password="",
        schema=schema,
    )
    old = PostgresApplicationRecorder(datastore, events_table_name="mailboxservice_events")
    old.create_table()  # the library's own DDL, as 0.1.0 ran it first
    old.insert_events(golden_events())
    datastore.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        quoted = sql.Identifier(schema).as_string(conn)
        for statement in POSTGRES_0_1_0:
            conn.execute(statement.format(s=quoted))
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {quoted}.mailboxservice_dispatch_index VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows
            )
        conn.execute(f"INSERT INTO {quoted}.mailboxservice_idempotency VALUES (%s, %s, %s, %s)", IDEMPOTENCY_ROW)
    with MailboxService(env=postgres_env) as service:
        check_migrated(service, rows)
    with psycopg.connect(postgres_url) as conn:
        found = conn.execute(f"SELECT version FROM {quoted}.mailboxservice_schema_version").fetchall()
    assert found == [(migrations.POSTGRES[-1].version,)]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_migrated_by_a_newer_run_mailbox_is_refused(backend, request, tmp_path):
    if backend == "sqlite":
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "new.db")}
    else:
        env = request.getfixturevalue("postgres_env")
    with MailboxService(env=env) as service:
        service.recorder.table("schema_version")  # the service created it
        versions = service.recorder.table("schema_version")
        if backend == "sqlite":
            with service.recorder.datastore.transaction(commit=True) as c:
                c.execute(f"UPDATE {versions} SET version = 99")
        else:
            with service.recorder.datastore.transaction(commit=True) as curs:
                curs.execute(f"UPDATE {versions} SET version = 99")
    with pytest.raises(SchemaTooNew, match="schema version 99"):
        MailboxService(env=env)


@pytest.mark.postgres
def test_a_postgres_schema_at_version_6_takes_the_write_function_of_version_7_and_serves(postgres_env, postgres_url):
    """Migration 7 replaces the write function in place: a schema left at 6 by the release before it
    is migrated when a service starts, and its commands (a claim's read check, a new thread's
    presumed-new probe) run through the new function."""
    with MailboxService(env=postgres_env) as service:
        service.submit("t1", "r1")
        recorder = service.recorder
        versions, write = recorder.table("schema_version"), recorder.table("write").split(".")[1].strip('"')
        with recorder.datastore.transaction(commit=True) as curs:
            for statement in next(m for m in migrations.POSTGRES if m.version == 6).statements(recorder):
                curs.execute(statement)
            curs.execute(f"UPDATE {versions} SET version = 6")

    def write_function_source() -> str:
        with psycopg.connect(postgres_url) as conn:
            found = conn.execute(
                "SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = %s AND p.proname = %s",
                [postgres_env["POSTGRES_SCHEMA"], write],
            ).fetchall()
        assert len(found) == 1
        return str(found[0][0])

    assert "FOR presumed IN SELECT" in write_function_source()
    with MailboxService(env=postgres_env) as service:
        claimed = service.claim("t1", consumer_id="w", lease_ms=1_000)
        assert claimed is not None and claimed.claim_token is not None
        service.ack(claimed.dispatch_id, claim_token=claimed.claim_token)
        service.submit("t2", "r2")
        assert service.get_run("r1").status is RunStatus.DONE
    assert "FOR presumed IN SELECT" not in write_function_source()
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute(f"SELECT version FROM {versions}").fetchall() == [(migrations.POSTGRES[-1].version,)]
