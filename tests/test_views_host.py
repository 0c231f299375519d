"""The views wired to the service on every backend: catch-up, rebuild, verify, claim_next."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory
from psycopg import sql
from typer.testing import CliRunner

from run_mailbox.cli.main import app
from run_mailbox.domain import DispatchStatus
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.views.host import PREFIX, ViewHost
from run_mailbox.projections import dispatch_queue, run_status


def _workload(service: MailboxService, clock) -> None:
    for i in range(9):
        service.submit(f"t{i % 3}", f"r{i}", priority=100 + i)
    first = service.claim("t0", consumer_id="w1")
    service.record_start(first.dispatch_id, claim_token=first.claim_token)
    service.nack(first.dispatch_id, claim_token=first.claim_token, error="flaky")
    second = service.claim("t1", consumer_id="w2", lease_ms=10)
    clock.advance(100)
    service.reclaim_expired_leases()
    third = service.claim("t2", consumer_id="w3")
    service.dead_letter(third.dispatch_id, claim_token=third.claim_token, error="unauthorized")
    service.interrupt("t1")
    assert second is not None


@pytest.fixture
def host(service):
    views = ViewHost(service)
    yield views
    views.close()


def test_caught_up_views_equal_a_rebuild_from_zero_and_a_second_rebuild(service, clock, host):
    _workload(service, clock)
    host.catch_up()
    incremental = {name: store.snapshot() for name, store in host.stores.items()}
    for name in host.stores:
        host.rebuild(name)
    once = {name: store.snapshot() for name, store in host.stores.items()}
    for name in host.stores:
        host.rebuild(name)
    twice = {name: store.snapshot() for name, store in host.stores.items()}
    assert incremental == once == twice
    assert all(store.position() == host.log_end() for store in host.stores.values())


def test_the_dispatch_queue_view_agrees_with_the_service(service, clock, host):
    _workload(service, clock)
    host.catch_up()
    store = host.store("dispatch_queue")
    ready = [row.dispatch_id for row in dispatch_queue.ready(store, clock.now, 100)]
    assert ready == list(service.ready_dispatch_ids(limit=100))
    dead = [row.dispatch_id for row in dispatch_queue.dead_letters(store, 100)]
    assert dead == [d.dispatch_id for d in service.list_terminal_dispatches() if d.status is DispatchStatus.DEAD_LETTER]
    counts = run_status.counts_by_status(host.store("run_status"))
    assert sum(counts.values()) == 9


def test_verify_finds_nothing_on_a_consistent_store(service, clock, host):
    _workload(service, clock)
    diffs, problems = host.verify()
    assert problems == []
    assert all(diff.differences == [] for diff in diffs)


def _tamper(service: MailboxService, host: ViewHost, dispatch_id: str) -> None:
    """Changes one row of the live dispatch_queue view behind the runner's back."""
    table = f"{PREFIX}_dispatch_queue"
    if isinstance(service.factory, PostgresFactory):
        datastore = service.recorder.datastore
        statement = sql.SQL("UPDATE {}.{} SET priority = 7 WHERE dispatch_id = %s").format(
            sql.Identifier(datastore.schema), sql.Identifier(table)
        )
        with psycopg.connect(**_conninfo(service), autocommit=True) as conn:
            conn.execute(statement, [dispatch_id])
    elif isinstance(service.factory, SQLiteFactory):
        with sqlite3.connect(service.env.get("SQLITE_DBNAME") + ".views") as conn:
            conn.execute(f"UPDATE {table} SET priority = 7 WHERE dispatch_id = ?", [dispatch_id])
    else:
        rows = host.store("dispatch_queue")._rows["dispatch_queue"]  # the in-memory store's own dict
        key = next(k for k, row in rows.items() if row["dispatch_id"] == dispatch_id)
        rows[key] = {**rows[key], "priority": 7}


def _conninfo(service: MailboxService) -> dict[str, str]:
    env = service.env
    return {
        "dbname": env.get("POSTGRES_DBNAME"),
        "host": env.get("POSTGRES_HOST"),
        "port": env.get("POSTGRES_PORT"),
        "user": env.get("POSTGRES_USER"),
    }


def test_verify_reports_a_view_row_altered_behind_its_back(service, clock, host):
    _workload(service, clock)
    host.catch_up()
    victim = service.list_dispatches("t0")[0].dispatch_id
    _tamper(service, host, victim)
    diffs, problems = host.verify()
    assert problems == []
    (queue_diff,) = [d for d in diffs if d.view == "dispatch_queue"]
    assert any(victim in line and "'priority', 7" in line for line in queue_diff.differences)
    assert all(d.differences == [] for d in diffs if d.view != "dispatch_queue")


def test_claim_next_takes_the_best_ready_dispatch_of_each_thread_at_most_once(service, clock):
    service.submit("a", "a1", priority=50)
    service.submit("a", "a2", priority=10)
    service.submit("b", "b1", priority=20)
    service.submit("c", "c1", priority=5, available_at=clock.now + 1_000)
    claimed = service.claim_next(consumer_id="w", limit=10)
    assert [d.run_id for d in claimed] == ["a2", "b1"]
    assert service.claim_next(consumer_id="w", limit=10) == []
    clock.advance(1_000)
    assert [d.run_id for d in service.claim_next(consumer_id="w", limit=10)] == ["c1"]


def test_claim_next_spreads_over_threads_however_long_one_threads_queue_is(service):
    """Z7: a thread with many ready dispatches does not hide the others."""
    for i in range(20):
        service.submit("long", f"long-{i}", priority=0)
    service.submit("short", "short-0", priority=5)
    claimed = service.claim_next(consumer_id="w", limit=2)
    assert sorted(d.thread_id for d in claimed) == ["long", "short"]


def test_claim_next_skips_threads_that_already_have_a_claim(service):
    service.submit("a", "a1")
    service.submit("a", "a2")
    service.claim("a", consumer_id="w1")
    assert service.claim_next(consumer_id="w2") == []


def test_the_cli_rebuilds_and_verifies_a_sqlite_store(tmp_path):
    db = tmp_path / "mailbox.db"
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}
    service = MailboxService(env=env)
    service.submit("t", "r")
    service.close()
    runner = CliRunner()
    rebuilt = runner.invoke(app, ["--db", str(db), "rebuild", "--all"])
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "dispatch_queue" in rebuilt.output
    verified = runner.invoke(app, ["--db", str(db), "verify"])
    assert verified.exit_code == 0, verified.output
    assert "every aggregate invariant holds" in verified.output


def test_the_cli_verify_exits_non_zero_with_a_readable_diff(tmp_path):
    db = tmp_path / "mailbox.db"
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(db)}
    service = MailboxService(env=env)
    queued = service.submit("t", "r")
    host = ViewHost(service)
    host.catch_up()
    host.close()
    service.close()
    with sqlite3.connect(f"{db}.views") as conn:
        conn.execute(f"UPDATE {PREFIX}_dispatch_queue SET priority = 7 WHERE dispatch_id = ?", [queued.dispatch_id])
    result = CliRunner().invoke(app, ["--db", str(db), "verify"])
    assert result.exit_code == 1
    assert "dispatch_queue differs from a fresh replay" in result.output


@pytest.mark.postgres
def test_claim_next_by_8_workers_claims_each_of_2000_dispatches_exactly_once(postgres_env):
    import threading

    setup = MailboxService(env=postgres_env, clock=lambda: 1_000)
    for i in range(2_000):
        setup.submit(f"thread-{i % 250}", f"run-{i}", dispatch_id=f"d-{i}")
    claims: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        service = MailboxService(env=postgres_env, clock=lambda: 2_000)
        try:
            barrier.wait()
            while True:
                got = service.claim_next(consumer_id=f"w{n}", limit=4)
                if not got and service.count_by_status()["queued"] == 0:
                    return
                for d in got:
                    with lock:
                        claims.append(d.dispatch_id)
                    service.ack(d.dispatch_id, claim_token=d.claim_token)
        except BaseException as exc:
            failures.append(exc)
        finally:
            service.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert len(claims) == 2_000
    assert sorted(claims) == sorted(f"d-{i}" for i in range(2_000))
    assert setup.count_by_status()["acked"] == 2_000
    claimed_events = [e for e in _all_events(setup) if e.kind == "DispatchClaimed"]
    assert len(claimed_events) == 2_000
    setup.close()


def _all_events(service: MailboxService):
    position, events = 0, []
    while True:
        page = service.canonical_events(after=position, limit=5_000)
        if not page:
            end = service.recorder.max_notification_id() or 0
            if position + 5_000 >= end:
                return events
            position += 5_000
            continue
        events += page
        position = page[-1].position


def test_following_views_see_new_events_without_a_catch_up_call(service, host):
    """Live follow: LISTEN/NOTIFY on Postgres, polling elsewhere."""
    import threading
    import time

    stop = threading.Event()
    threads = host.follow(stop)
    try:
        service.submit("t", "r-live")
        deadline = time.monotonic() + 10
        while any(store.position() < host.log_end() for store in host.stores.values()):
            assert time.monotonic() < deadline, "views did not follow the log"
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in threads)


@pytest.mark.postgres
def test_closing_the_host_ends_the_listening_threads_of_a_subscription_no_view_thread_stopped(postgres_env):
    """The library's listening threads are not daemons: one left running keeps a process from exiting. The host
    stops every live subscription it opened when it closes, whether or not its view thread got to do it."""
    import threading
    import time

    service = MailboxService(env=postgres_env)
    host = ViewHost(service)
    before = {t for t in threading.enumerate() if not t.daemon}
    try:
        subscription = host._subscribe(0)  # as a view thread would, then never reaching its own stop
        service.submit("t", "r")
        assert next(iter(subscription))[0] >= 1
        started = {t for t in threading.enumerate() if not t.daemon} - before
        assert started, "the subscription started no thread: the test would prove nothing"
        host.close()  # the service and its pool stay open: only the host's close can end them
        deadline = time.monotonic() + 5
        while any(t.is_alive() for t in started) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [t.name for t in started if t.is_alive()]
    finally:
        host.close()
        service.close()
