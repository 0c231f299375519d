"""The worker's leases and wake-up on real Postgres: the heartbeat keeps a long handler's claim, a lost lease
stops the handler's outcome from being written, and LISTEN/NOTIFY wakes an idle worker at once."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from run_mailbox import DispatchStatus, MailboxService
from run_mailbox.worker import Job
from tests.worker_support import kinds_of, reply, running, wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg(postgres_env: dict[str, str]) -> Iterator[MailboxService]:
    service = MailboxService(env=postgres_env)
    yield service
    service.close()


@pytest.fixture
def other(postgres_env: dict[str, str]) -> Iterator[MailboxService]:
    """Another process's service on the same store (another worker's sweeps, an operator's interrupt)."""
    service = MailboxService(env=postgres_env)
    yield service
    service.close()


def test_the_heartbeat_keeps_a_long_handlers_lease_past_the_original_one(pg, other):
    def handler(job: Job) -> Any:
        time.sleep(1.0)  # more than three leases of 300 ms
        return reply(job)

    with running(pg, handler, lease_ms=300) as worker:
        d = pg.submit("thread-1", "run-1")
        claimed = wait_until(lambda: (r := pg.get_dispatch(d.dispatch_id)).status is DispatchStatus.CLAIMED and r)
        reclaimed = []
        while pg.get_dispatch(d.dispatch_id).status is DispatchStatus.CLAIMED:
            reclaimed += other.reclaim_expired_leases()  # another worker sweeping all along
            time.sleep(0.05)
    done = pg.get_dispatch(d.dispatch_id)
    assert reclaimed == [] and done.status is DispatchStatus.ACKED and done.attempt_count == 0
    assert claimed.lease_until is not None and done.completed_at is not None
    assert done.completed_at > claimed.lease_until + 300  # it finished well after the first lease would have ended
    assert kinds_of(pg, "run-1").count("LeaseExtended") >= 2
    assert worker.stats["acked"] == 1


def test_an_interrupt_mid_handler_cancels_it_and_its_outcome_is_not_written(pg, other):
    cancelled = threading.Event()
    reasons: list[str | None] = []

    def handler(job: Job) -> Any:
        job.wait(10)  # wakes early once the attempt is cancelled
        reasons.append(job.cancel_reason)
        cancelled.set()
        return reply(job)  # ignored: the dispatch is no longer this attempt's

    with running(pg, handler, lease_ms=300) as worker:
        d = pg.submit("thread-1", "run-1")
        wait_until(lambda: pg.get_dispatch(d.dispatch_id).status is DispatchStatus.CLAIMED)
        other.interrupt("thread-1")
        assert cancelled.wait(5), "the handler was not told"
        wait_until(lambda: worker.stats["lost"] == 1)
    assert reasons == ["lease lost"]
    assert pg.get_dispatch(d.dispatch_id).status is DispatchStatus.SUPERSEDED
    kinds = kinds_of(pg, "run-1")
    assert "MessageCommitted" not in kinds and "DispatchAcked" not in kinds


def test_a_handler_that_ignores_the_cancellation_writes_nothing_when_it_returns(pg, other):
    returned = threading.Event()

    def handler(job: Job) -> Any:
        time.sleep(0.8)  # does not look at job.cancelled
        returned.set()
        return reply(job)

    with running(pg, handler, lease_ms=300) as worker:
        d = pg.submit("thread-1", "run-1")
        wait_until(lambda: pg.get_dispatch(d.dispatch_id).status is DispatchStatus.CLAIMED)
        other.interrupt("thread-1")
        wait_until(lambda: worker.stats["lost"] == 1)
        assert returned.wait(5)
        time.sleep(0.2)
    assert "MessageCommitted" not in kinds_of(pg, "run-1") and worker.stats["acked"] == 0


def test_an_async_handler_is_cancelled_when_its_lease_is_lost(pg, other):
    outcome: list[str] = []

    async def handler(job: Job) -> Any:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            outcome.append(f"cancelled: {job.cancel_reason}")
            raise
        return reply(job)

    with running(pg, handler, lease_ms=300) as worker:
        d = pg.submit("thread-1", "run-1")
        wait_until(lambda: pg.get_dispatch(d.dispatch_id).status is DispatchStatus.CLAIMED)
        other.interrupt("thread-1")
        wait_until(lambda: worker.stats["lost"] == 1)
    assert outcome == ["cancelled: lease lost"]
    assert pg.get_dispatch(d.dispatch_id).status is DispatchStatus.SUPERSEDED


def test_a_lease_that_ran_out_and_was_reclaimed_refuses_the_late_ack(pg, other):
    def handler(job: Job) -> Any:
        if job.dispatch.attempt_count == 0:
            time.sleep(0.6)  # outlives its lease: no heartbeat comes in time
        return None

    with running(pg, handler, lease_ms=200, heartbeat_s=30, sweep_interval_s=30, concurrency=1) as worker:
        d = pg.submit("thread-1", "run-1")
        wait_until(lambda: pg.get_dispatch(d.dispatch_id).status is DispatchStatus.CLAIMED)
        wait_until(other.reclaim_expired_leases, timeout=5)  # another worker's sweep requeues it
        done = wait_until(lambda: (r := pg.get_dispatch(d.dispatch_id)).status is DispatchStatus.ACKED and r)
    assert worker.stats["lost"] == 1 and worker.stats["acked"] == 1  # the first attempt's ack was refused
    assert done.attempt_count == 1
    kinds = kinds_of(pg, "run-1")
    assert kinds.count("DispatchClaimed") == 2 and kinds.count("DispatchAcked") == 1


def test_listen_wakes_an_idle_worker_long_before_its_poll(pg, other):
    started: dict[str, float] = {}

    def handler(job: Job) -> None:
        started[job.run_id] = time.perf_counter()

    with running(pg, handler, poll_interval_s=30) as worker:
        assert worker.listening
        time.sleep(0.2)  # idle, waiting on its 30 s poll
        latencies = []
        for i in range(5):
            before = time.perf_counter()
            other.submit(f"thread-{i}", f"run-{i}")
            wait_until(lambda i=i: f"run-{i}" in started, timeout=5)
            latencies.append(started[f"run-{i}"] - before)
            time.sleep(0.1)
    assert max(latencies) < 2.0, latencies  # typically tens of milliseconds here; the poll would take 30 s


def test_without_listen_an_idle_worker_waits_for_its_poll(pg, other):
    started = threading.Event()
    with running(pg, lambda job: started.set(), poll_interval_s=3, listen=False) as worker:
        assert not worker.listening
        time.sleep(0.5)  # its first claim attempt is behind it: the next is its poll's
        other.submit("thread-1", "run-1")
        assert not started.wait(1.0)
        assert started.wait(5)


def test_the_worker_listens_again_after_its_connection_is_killed(postgres_env, postgres_url, monkeypatch, other):
    app_name = f"mbx-worker-{time.time_ns()}"
    monkeypatch.setenv("PGAPPNAME", app_name)  # this test's connections only (libpq reads it)
    service = MailboxService(env=postgres_env)
    started: set[str] = set()
    try:
        with running(service, lambda job: started.add(job.run_id), poll_interval_s=30) as worker:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                killed = conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = %s AND query ILIKE 'LISTEN %%' AND pid <> pg_backend_pid()",
                    [app_name],
                ).fetchall()
            assert len(killed) == 1
            time.sleep(1.0)  # it listens again after a short pause
            other.submit("thread-1", "run-1")
            wait_until(lambda: "run-1" in started, timeout=3)
    finally:
        service.close()
    assert worker.stats["acked"] == 1
