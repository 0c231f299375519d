"""Store faults on real Postgres: large writes, timeouts, aborted transactions, killed connections.

Nothing is mocked: the faults are real (a lock held by another session, a backend terminated by
``pg_terminate_backend``, a database that stops accepting connections). Each service's connections
carry a test-unique ``application_name`` (libpq reads ``PGAPPNAME``) so a test kills only its own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, PersistenceError, StoredEvent
from psycopg import Cursor, sql

from run_mailbox import Limits
from run_mailbox.domain import MailboxError, StoreTimeout, StoreUnavailable
from run_mailbox.infrastructure.persistence.rows import IdempotencyRow
from run_mailbox.infrastructure.service import MailboxService
from tests.helpers import hold_events_lock

pytestmark = pytest.mark.postgres

T = "thread-1"


@pytest.fixture
def app_name(monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"mbx-test-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("PGAPPNAME", name)
    return name


def terminate(url: str, app_name: str) -> int:
    """Terminates every backend of the test's service; returns how many."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
            "AND pid <> pg_backend_pid()",
            [app_name],
        ).fetchall()
    return len(rows)


def within(seconds: float, call: Callable[[], Any], on_timeout: Callable[[], Any]) -> Any:
    """``call()`` in a thread; a call still running after ``seconds`` fails the test (after ``on_timeout``)."""
    outcome: list[tuple[str, Any]] = []

    def run() -> None:
        try:
            outcome.append(("ok", call()))
        except Exception as exc:  # re-raised below, in the test's thread
            outcome.append(("error", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        on_timeout()
        pytest.fail(f"the call did not return within {seconds} s")
    status, value = outcome[0]
    if status == "error":
        raise value
    return value


@pytest.fixture
def app(postgres_env: dict[str, str], app_name: str) -> Iterator[MailboxService]:
    service = MailboxService(env=postgres_env)
    yield service
    service.close()


def text_message(message_id: str, size: int) -> dict[str, Any]:
    return {"message_id": message_id, "role": "user", "content": [{"type": "text", "text": "x" * size}]}


# ---------------------------------------------------------------------- 1. large writes


@pytest.fixture
def roomy(postgres_env: dict[str, str], app_name: str) -> Iterator[MailboxService]:
    service = MailboxService(env=postgres_env, limits=Limits.ceiling())
    yield service
    service.close()


@pytest.mark.parametrize(("count", "megabytes"), [(1, 12), (9, 1)], ids=["one-12MB-message", "nine-1MB-messages"])
def test_a_large_commit_returns_and_releases_the_events_lock(
    roomy, postgres_env, postgres_url, app_name, count, megabytes
):
    """The library's pipelined insert hung for ever on such a batch (from about 5 MB here), holding
    the events table's EXCLUSIVE lock, so every other writer waited too. (``app`` runs at the
    limits' ceilings: the defaults refuse a message over 1 MiB and a commit over 4 MiB.)"""
    roomy.submit(T, "r1", dispatch_id="d1")
    messages = [text_message(f"m{i}", megabytes * 1024 * 1024) for i in range(count)]
    result = within(120, lambda: roomy.commit_messages(T, "r1", messages), lambda: terminate(postgres_url, app_name))
    assert (result.message_seq_start, result.message_seq_end) == (1, count)
    other = MailboxService(env={**postgres_env, "MAILBOX_LOCK_TIMEOUT_MS": "10000"})
    try:
        assert within(30, lambda: other.submit(T, "r2", dispatch_id="d2"), lambda: None).dispatch_id == "d2"
    finally:
        other.close()
    committed = [e for e in roomy.canonical_events(limit=100) if e.kind == "MessageCommitted"]
    assert len(committed) == count


# ---------------------------------------------------------------------- 2. timeouts


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"MAILBOX_LOCK_TIMEOUT_MS": "300"}, "lock timeout"),
        ({"MAILBOX_LOCK_TIMEOUT_MS": "0", "MAILBOX_STATEMENT_TIMEOUT_MS": "300"}, "statement timeout"),
    ],
    ids=["lock_timeout", "statement_timeout"],
)
def test_a_write_stuck_behind_the_events_lock_ends_with_store_timeout(postgres_env, postgres_url, settings, reason):
    app = MailboxService(env={**postgres_env, **settings})
    try:
        app.submit(T, "r0", dispatch_id="d0")
        head = app.recorder.max_notification_id()
        holder = hold_events_lock(postgres_url, postgres_env["POSTGRES_SCHEMA"])
        try:
            started = time.monotonic()
            with pytest.raises(StoreTimeout, match=reason):
                app.submit(T, "r1", dispatch_id="d1", idempotency_key="k1")
            assert time.monotonic() - started < 5, "a timeout is not retried"
        finally:
            holder.close()
        # Rolled back: no event, no key, no index row; the same command with the same key then succeeds.
        assert app.recorder.max_notification_id() == head
        assert app.tables.find_idempotency("k1") is None
        assert [row.dispatch_id for row in app.tables.thread_dispatches(T)] == ["d0"]
        assert app.submit(T, "r1", dispatch_id="d1", idempotency_key="k1").dispatch_id == "d1"
    finally:
        app.close()


def test_a_write_that_presumed_a_stored_aggregate_new_is_refused_without_waiting_for_the_events_lock(
    postgres_env, postgres_url
):
    """A write that creates an aggregate it presumed new (a submit's mailbox on a thread the service
    had not seen) is refused by an index probe before the table's lock when the aggregate exists: a
    conflict, not a lock timeout, however long another session holds the lock, and so it holds up
    no other writer either."""
    app = MailboxService(env={**postgres_env, "MAILBOX_LOCK_TIMEOUT_MS": "60000"})
    try:
        stored = _event()
        app.recorder.insert_events([stored])
        head = app.recorder.max_notification_id()
        holder = hold_events_lock(postgres_url, postgres_env["POSTGRES_SCHEMA"])
        try:
            write = partial(app.recorder.insert_events, [_event(), stored], presumed_new=[stored.originator_id])
            again = within(30, write, holder.close)
        except IntegrityError:
            again = None
        finally:
            holder.close()
        assert again is None, "the write of a stored version was accepted"
        assert app.recorder.max_notification_id() == head
    finally:
        app.close()


def test_a_write_runs_no_client_code_inside_its_transaction(postgres_env):
    """A write is one statement: the events lock is never held while the client does anything else,
    so a client that stalls cannot hold it (a stall could only come between statements)."""
    app = MailboxService(env=postgres_env)
    try:
        statements: list[str] = []
        original = Cursor.execute

        def counted(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
            statements.append(query.as_string(self) if hasattr(query, "as_string") else str(query))
            return original(self, query, params, **kwargs)

        Cursor.execute = counted  # type: ignore[method-assign]
        try:
            app.submit(T, "r1", dispatch_id="d1", idempotency_key="k1")
        finally:
            Cursor.execute = original  # type: ignore[method-assign]
        writes = [q for q in statements if "mailboxservice_write" in q]
        assert len(writes) == 1
        assert not any("LOCK TABLE" in q or q.lstrip().upper().startswith("INSERT") for q in statements)
    finally:
        app.close()


def test_a_pooled_connection_left_idle_in_a_transaction_is_cut_off(postgres_env):
    """Whatever else uses the service's pool (a view store, a host's own query) cannot hold a
    transaction open for longer than the idle-in-transaction timeout."""
    app = MailboxService(env={**postgres_env, "MAILBOX_IDLE_IN_TRANSACTION_TIMEOUT_MS": "1000"})
    try:
        app.submit(T, "r0", dispatch_id="d0")
        failing = pytest.raises(PersistenceError, match="idle-in-transaction")  # the library wraps psycopg's
        with failing, app.recorder.datastore.get_connection() as conn:
            conn.execute("BEGIN")
            conn.execute("SELECT 1")
            time.sleep(1.8)
            conn.execute("SELECT 1")
        assert app.submit(T, "r1", dispatch_id="d1").dispatch_id == "d1"
    finally:
        app.close()


# ---------------------------------------------------------------------- 3. aborted transactions


def _event() -> StoredEvent:
    return StoredEvent(originator_id=uuid.uuid4(), originator_version=1, topic="tests:Probe", state=b"{}")


def _key(key: str) -> IdempotencyRow:
    return IdempotencyRow(key=key, command="probe", digest="d", result="null")


def test_a_write_aborted_by_a_duplicate_key_leaves_the_connection_usable(postgres_env):
    """With psycopg's pipeline, the library's insert path auto-prepares its NOTIFY and INSERT at
    their 6th use; when that use sits behind a failed statement, the server skips the PREPARE but
    psycopg records it: every later write on that connection failed with "prepared statement
    _pg3_N does not exist". This pins that sequence on one pooled connection (whether the library's
    path went wrong here depended on when psycopg read the error; the race below reproduced it)."""
    app = MailboxService(env={**postgres_env, "POSTGRES_POOL_SIZE": "1", "POSTGRES_MAX_OVERFLOW": "0"})
    try:
        recorder = app.recorder
        for i in range(5):
            recorder.insert_events([_event()], idempotency=_key(f"k{i}"))
        with pytest.raises(IntegrityError):
            recorder.insert_events([_event()], idempotency=_key("k0"))
        for i in range(5, 8):
            recorder.insert_events([_event()], idempotency=_key(f"k{i}"))
        assert app.submit(T, "r1", dispatch_id="d1").dispatch_id == "d1"
    finally:
        app.close()


def test_racing_duplicate_keyed_acks_leave_later_commands_working(app):
    """The bug report's sequence: 8 threads send the same keyed ack, then plain commands follow."""
    errors: list[BaseException] = []

    def run_all(calls: list[Callable[[], Any]]) -> None:
        barrier = threading.Barrier(len(calls))

        def run(call: Callable[[], Any]) -> None:
            barrier.wait()
            try:
                call()
            except MailboxError:
                pass
            except Exception as exc:  # collected, asserted below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(call,)) for call in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

    for round_ in range(6):
        thread, dispatch, key = f"t{round_}", f"d{round_}", f"k{round_}"
        app.submit(thread, f"r{round_}", dispatch_id=dispatch)
        token = app.claim_dispatch(dispatch, consumer_id="c").claim_token
        run_all([partial(app.ack, dispatch, claim_token=token, idempotency_key=key)] * 8)
        run_all([partial(app.submit, thread, f"p{round_}-{i}") for i in range(8)])
        assert app.get_dispatch(dispatch).status.value == "acked"
    assert errors == []
    acks = [e for e in app.canonical_events(limit=10_000) if e.kind == "DispatchAcked"]
    assert len(acks) == 6


# ---------------------------------------------------------------------- 4. reads retried, then typed


def test_reads_and_writes_survive_killed_connections(app, postgres_url, app_name):
    app.submit(T, "r1", dispatch_id="d1", idempotency_key="k1")
    app.claim_dispatch("d1", consumer_id="c", lease_ms=1)
    app.submit("thread-2", "r2", dispatch_id="d2")
    reads: list[Callable[[], Any]] = [
        lambda: app.tables.find_idempotency("k1"),
        lambda: app.tables.ready_threads(10**15, 10),
        lambda: app.tables.ready_dispatches(10**15, 10),
        lambda: app.tables.expired_claims(10**15, 10),
        lambda: app.tables.thread_dispatches(T),
        app.tables.count_by_status,
        lambda: app.get_dispatch("d1"),
        app.recorder.max_notification_id,
        lambda: app.recorder.select_notifications(start=1, limit=10),
    ]
    for read in reads:
        assert terminate(postgres_url, app_name) > 0
        assert read()
    assert terminate(postgres_url, app_name) > 0
    assert app.submit(T, "r3", dispatch_id="d3").dispatch_id == "d3"


@pytest.fixture
def own_database(postgres_url: str) -> Iterator[tuple[str, str]]:
    """A database of the test's own, so it can stop accepting connections without harming others."""
    name = f"run_mailbox_down_{uuid.uuid4().hex[:10]}"
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield admin, name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(sql.Identifier(name)))
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_store_that_stays_down_gives_store_unavailable_with_the_servers_reason(own_database):
    admin, name = own_database
    app = MailboxService(
        env={"MAILBOX_DATABASE_URL": admin.rsplit("/", 1)[0] + "/" + name, "POSTGRES_CONNECT_TIMEOUT": "2"}
    )
    try:
        app.submit(T, "r1", dispatch_id="d1")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(sql.Identifier(name)))
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        for call in (
            lambda: app.tables.find_idempotency("k"),
            lambda: app.get_dispatch("d1"),
            lambda: app.submit(T, "r2"),
        ):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="not currently accepting connections"):
                call()
            assert time.monotonic() - started < 15
    finally:
        app.close()
