"""Start-up on Postgres: fail fast with the real cause, refuse schema names that need quoting, and
never leave a partial write; the timeout settings."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import PersistenceError, StoredEvent
from eventsourcing.utils import Environment
from psycopg import sql

from run_mailbox.domain import StoreUnavailable
from run_mailbox.infrastructure.persistence.postgres import StoreTimeouts
from run_mailbox.infrastructure.persistence.rows import DispatchIndexRow, IdempotencyRow
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.settings import SettingsError, check_schema_name, store_timeouts

PASSWORD = "s3cret-Pa55"


def server_url(postgres_url: str, dbname: str, password: str = PASSWORD) -> str:
    """The test server's URL, with a password (trust auth ignores it) and another database."""
    base = postgres_url.rsplit("/", 1)[0]
    scheme, rest = base.split("://", 1)
    user_host = rest.split("@", 1)
    if len(user_host) == 2:
        user, host = user_host
        return f"{scheme}://{user.split(':', 1)[0]}:{password}@{host}/{dbname}"
    return f"{scheme}://postgres:{password}@{rest}/{dbname}"


# ---------------------------------------------------------------------- 5. fail fast


@pytest.mark.postgres
def test_a_missing_database_fails_at_once_naming_it_and_the_servers_reason(postgres_url):
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        MailboxService(env={"MAILBOX_DATABASE_URL": server_url(postgres_url, "no_such_mailbox_db")})
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "no_such_mailbox_db" in message
    assert 'database "no_such_mailbox_db" does not exist' in message
    assert PASSWORD not in message
    assert caught.value.__cause__ is None  # the chained driver error would repeat the connection string


@pytest.mark.postgres
def test_a_server_that_refuses_connections_fails_at_once(postgres_url):
    url = server_url(postgres_url, "run_mailbox_test").replace(":5432/", ":1/")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="refused"):
        MailboxService(env={"MAILBOX_DATABASE_URL": url})
    assert time.monotonic() - started < 5


@pytest.mark.postgres
def test_a_missing_schema_is_a_settings_error_naming_it(postgres_url):
    with pytest.raises(SettingsError, match="schema 'no_such_schema_x' does not exist"):
        MailboxService(env={"MAILBOX_DATABASE_URL": postgres_url, "POSTGRES_SCHEMA": "no_such_schema_x"})


# ---------------------------------------------------------------------- 6. schema names


@pytest.fixture
def odd_schema(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[str]:
    schema: str = request.param
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield schema
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.mark.postgres
@pytest.mark.parametrize("odd_schema", ["Upper_t", "with space t", 'with"quote_t', "select"], indirect=True)
def test_a_schema_name_that_needs_quoting_is_refused_before_anything_is_written(odd_schema, postgres_url):
    with pytest.raises(SettingsError, match="POSTGRES_SCHEMA"):
        MailboxService(env={"MAILBOX_DATABASE_URL": postgres_url, "POSTGRES_SCHEMA": odd_schema})
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = %s", [odd_schema]).fetchone()
    assert tables == (0,)


@pytest.mark.parametrize("name", ["mailbox", "_x1", "t_0123abcd", "a" * 63])
def test_schema_names_that_need_no_quoting_pass(name):
    assert check_schema_name(name) == name


@pytest.mark.parametrize("name", ["Upper", "with space", 'a"b', "1abc", "a-b", "a" * 64, "é"])
def test_schema_names_that_need_quoting_are_refused(name):
    with pytest.raises(SettingsError, match="POSTGRES_SCHEMA"):
        check_schema_name(name)


@pytest.mark.postgres
def test_a_write_that_fails_after_its_hook_could_run_writes_nothing(pg_service):
    """The library built the events inside its transaction, after the hook, and committed the hook's
    rows when that failed in Python: a schema named ``Upper`` left a dispatch-index row without its
    events that way. Here the same failure (the composite type is unknown) writes nothing."""
    recorder = pg_service.recorder
    head = recorder.max_notification_id()
    del recorder.datastore.psycopg_python_types[recorder.stored_event_type_name]
    try:
        event = StoredEvent(originator_id=uuid.uuid4(), originator_version=1, topic="tests:Probe", state=b"{}")
        row = DispatchIndexRow("dx", "tx", "rx", "queued", 1, 1, 1, None, 1)
        with pytest.raises(PersistenceError, match="Composite type"):
            recorder.insert_events([event], index_rows=[row], idempotency=IdempotencyRow("kx", "probe", "d", "null"))
    finally:
        recorder.datastore.psycopg_type_adapters.clear()
        recorder.datastore.register_type_adapters()
    assert recorder.max_notification_id() == head
    assert recorder.thread_dispatches("tx") == []
    assert recorder.find_idempotency("kx") is None


# ---------------------------------------------------------------------- 2. timeout settings


def test_timeout_settings_have_defaults_and_fall_back_to_the_librarys_keys():
    assert store_timeouts({}) == StoreTimeouts(lock_ms=5_000, statement_ms=30_000, idle_in_transaction_ms=5_000)
    assert store_timeouts({"POSTGRES_LOCK_TIMEOUT": "2", "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "3"}) == (
        StoreTimeouts(lock_ms=2_000, statement_ms=30_000, idle_in_transaction_ms=3_000)
    )
    env = {
        "MAILBOX_LOCK_TIMEOUT_MS": "250",
        "POSTGRES_LOCK_TIMEOUT": "2",
        "MAILBOX_STATEMENT_TIMEOUT_MS": "0",
        "MAILBOX_IDLE_IN_TRANSACTION_TIMEOUT_MS": "900",
    }
    assert store_timeouts(env) == StoreTimeouts(lock_ms=250, statement_ms=0, idle_in_transaction_ms=900)
    prefixed = Environment("MailboxService", {"MAILBOXSERVICE_MAILBOX_LOCK_TIMEOUT_MS": "70"})
    assert store_timeouts(prefixed).lock_ms == 70


@pytest.mark.parametrize("value", ["abc", "-1", "1.5"])
def test_a_malformed_timeout_is_refused_at_start(value):
    with pytest.raises(SettingsError, match="MAILBOX_LOCK_TIMEOUT_MS"):
        MailboxService(env={"MAILBOX_DATABASE_URL": "postgresql://u@127.0.0.1:1/x", "MAILBOX_LOCK_TIMEOUT_MS": value})
