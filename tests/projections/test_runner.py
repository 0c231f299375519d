"""The view runner: paged catch-up, waiting for a position, live follow, concurrent runners, crash and resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from run_mailbox.infrastructure.views.pages import LogPages
from run_mailbox.projections.runner import ViewRunner, rebuild
from run_mailbox.projections.stores import MemoryViewStore, PostgresViewStore
from run_mailbox.projections.view import RebuildFailed
from tests.projections._toy_view import (
    DecodedSubscription,
    ToyView,
    log_end,
    log_reader,
    record_history,
    replayed,
)

ROOT = Path(__file__).resolve().parents[2]


class CountingStore:
    """A real store that also remembers the size of every batch handed to ``apply``."""

    def __init__(self, store: Any) -> None:
        self.store, self.view, self.batches = store, store.view, []

    def position(self) -> int:
        return int(self.store.position())

    def apply(self, batch: Sequence[Any], through: int | None = None) -> int:
        self.batches.append(len(batch))
        return int(self.store.apply(batch, through))


def eventually(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_catch_up_reads_page_after_page_until_a_short_page_applying_each_in_one_transaction(service, clock, make_store):
    end = record_history(service, clock, cycles=3)
    read = log_reader(service)
    asked: list[int] = []

    def read_page(after: int, limit: int) -> list[Any]:
        asked.append(after)
        return read(after, limit)

    store = CountingStore(make_store())
    assert ViewRunner(store, read_page, batch_size=10).catch_up() == end
    positions = [position for position, _ in read(0, end)]
    full_page_ends = positions[9::10]
    assert asked == [0, *full_page_ends]  # a short page is the end; after full pages, one more read finds nothing
    assert store.batches == [10] * (end // 10) + ([end % 10] if end % 10 else [])
    assert store.position() == end

    batches = len(store.batches)
    assert ViewRunner(store, read_page, batch_size=10).catch_up() == 0
    assert asked[-1] == end and len(store.batches) == batches


def test_wait_until_returns_once_the_position_is_applied_and_times_out_past_the_log_end(service, clock, make_store):
    end = record_history(service, clock, cycles=2)
    runner = ViewRunner(make_store(), log_reader(service), batch_size=25)
    runner.wait_until(end - 5, timeout=5.0)
    assert runner.store.position() == end
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        runner.wait_until(end + 1, timeout=0.3)
    assert time.monotonic() - started < 3.0


def test_follow_without_a_subscription_polls_the_log_until_stopped(service, clock, make_store):
    record_history(service, clock, cycles=2)
    store = make_store()
    runner = ViewRunner(store, log_reader(service), batch_size=20, poll_interval=0.05)
    stop = threading.Event()
    follower = threading.Thread(target=runner.follow, args=(None, stop))
    follower.start()
    try:
        end = record_history(service, clock, cycles=2)
        eventually(lambda: store.position() == end)
    finally:
        stop.set()
        follower.join(timeout=5.0)
    assert not follower.is_alive()
    assert store.snapshot() == replayed(service)


@pytest.mark.parametrize("backend", ["memory_service", pytest.param("pg_service", marks=pytest.mark.postgres)])
def test_follow_applies_a_live_subscription_in_small_batches_until_stopped(backend, request, clock):
    service = request.getfixturevalue(backend)
    record_history(service, clock, cycles=2)
    store = CountingStore(MemoryViewStore(ToyView()))
    runner = ViewRunner(store, log_reader(service), batch_size=1000, follow_batch_size=8)
    caught_up: list[int] = []

    def subscribe(after: int) -> DecodedSubscription:
        caught_up.append(len(store.batches))
        return DecodedSubscription(service, after)

    stop = threading.Event()
    follower = threading.Thread(target=runner.follow, args=(subscribe, stop))
    follower.start()
    try:
        eventually(lambda: caught_up)
        end = record_history(service, clock, cycles=3)
        eventually(lambda: store.position() == end)
    finally:
        stop.set()
        follower.join(timeout=5.0)
    assert not follower.is_alive()
    assert caught_up == [1] and store.batches[0] > 8  # the catch-up: one page
    live = store.batches[1:]
    assert len(live) > 2 and max(live) <= 8
    assert store.store.snapshot() == replayed(service)


def test_two_runners_on_one_view_apply_every_event_exactly_once(service, clock, make_store):
    end = record_history(service, clock, cycles=8)
    read = log_reader(service)
    first, second = make_store(), make_store()  # two stores, one set of tables
    applied: list[int] = []

    def run(store: Any, batch_size: int) -> None:
        applied.append(ViewRunner(store, read, batch_size=batch_size).catch_up())

    runners = [threading.Thread(target=run, args=(first, 7)), threading.Thread(target=run, args=(second, 11))]
    for thread in runners:
        thread.start()
    for thread in runners:
        thread.join(timeout=60)
    assert sum(applied) == end
    assert first.position() == second.position() == end
    assert first.snapshot() == second.snapshot() == replayed(service)


def test_rebuild_catches_up_again_when_a_live_runner_moved_the_view_past_it(service, clock, make_store):
    store = make_store()
    read = log_reader(service)
    record_history(service, clock, cycles=3)
    live = ViewRunner(store, read)
    live.catch_up()
    moved = []

    def read_page(after: int, limit: int) -> list[Any]:
        page = read(after, limit)
        if len(page) < limit and not moved:  # the scratch store reached the end: events arrive, the live view moves on
            moved.append(record_history(service, clock, cycles=1))
            live.catch_up()
        return page

    assert rebuild(store, read_page, batch_size=40) == moved[0]
    assert store.snapshot() == replayed(service)


CHILD = r"""
import json, sys, time
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.projections.runner import ViewRunner
from run_mailbox.projections.stores import PostgresViewStore
from tests.projections._toy_view import ToyView, log_reader

class SlowToyView(ToyView):
    def handle(self, position, event, tx):
        time.sleep(0.002)
        super().handle(position, event, tx)

env = json.loads(sys.argv[1])
service = MailboxService(env=env)
store = PostgresViewStore(SlowToyView(), service.recorder.datastore.pool, schema=env["POSTGRES_SCHEMA"], prefix="crash")
read = log_reader(service)

def read_page(after, limit):
    print(after, flush=True)
    time.sleep(0.03)
    return read(after, limit)

ViewRunner(store, read_page, batch_size=10).catch_up()
print("done", flush=True)
"""


@pytest.mark.postgres
def test_a_runner_killed_mid_catch_up_resumes_to_the_view_a_fresh_rebuild_gives(pg_service, postgres_env, clock):
    end = record_history(pg_service, clock, cycles=10)
    assert end > 300
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(postgres_env)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.strip().isdigit() and int(line) >= 30:  # three batches committed, the fourth about to run
                break
        else:
            pytest.fail(f"the runner ended early: {child.stderr.read() if child.stderr else ''}")
        time.sleep(0.04)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    pool = pg_service.recorder.datastore.pool
    store = PostgresViewStore(ToyView(), pool, schema=postgres_env["POSTGRES_SCHEMA"], prefix="crash")
    resumed_from = store.position()
    assert 30 <= resumed_from < end
    assert ViewRunner(store, log_reader(pg_service), batch_size=50).catch_up() == end - resumed_from
    assert store.position() == end

    fresh = store.begin_rebuild()
    ViewRunner(fresh, log_reader(pg_service), batch_size=100).catch_up()
    assert store.snapshot() == fresh.snapshot() == replayed(pg_service)


def test_rebuilds_swapped_in_under_a_following_runner_lose_and_repeat_no_event(service, clock, make_store):
    read = log_reader(service)
    record_history(service, clock, cycles=2)
    follower_store, rebuilt_store = make_store(), make_store()  # one set of tables, two connections
    stop_following, stop_writing = threading.Event(), threading.Event()

    def write() -> None:  # a steady writer the rebuild can overtake (one it can't is the next test's case)
        while not stop_writing.wait(0.01):
            record_history(service, clock, cycles=1, threads=2)

    failures: list[BaseException] = []

    def follow() -> None:
        try:
            ViewRunner(follower_store, read, batch_size=3, poll_interval=0.001).follow(None, stop_following)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=follow)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(5):  # the follower keeps applying while the rebuilt tables are swapped in under it
            rebuild(rebuilt_store, read, batch_size=20, attempts=200, log_end=lambda: log_end(service))
    finally:
        stop_writing.set()
        threads[0].join(timeout=30.0)
        stop_following.set()
        threads[1].join(timeout=30.0)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    ViewRunner(rebuilt_store, read).catch_up()
    assert rebuilt_store.snapshot() == replayed(service)


def test_a_rebuild_the_writers_outpace_fails_after_its_attempts_and_leaves_the_live_view_alone(
    service, clock, make_store
):
    store = make_store()
    read = log_reader(service)
    record_history(service, clock, cycles=3)
    live = ViewRunner(store, read)
    live.catch_up()
    before = store.snapshot()
    reads: list[int] = []

    def read_page(after: int, limit: int) -> list[Any]:
        reads.append(after)
        page = read(after, limit)
        if not page or page[-1][0] >= log_end(service) - limit:  # near the end: more is written, the live view takes it
            record_history(service, clock, cycles=1)
            live.catch_up()
        return page

    with pytest.raises(RebuildFailed):
        rebuild(store, read_page, batch_size=4, attempts=3, log_end=lambda: log_end(service))
    assert len(reads) <= log_end(service) // 4 + 2 * 3  # each attempt stopped at the end it saw when it began
    assert store.snapshot() != before and store.position() == log_end(service)  # the live view kept following
    assert store.snapshot() == replayed(service)


@pytest.mark.postgres
def test_a_runner_blocked_behind_a_swap_in_applies_nothing_the_swapped_in_view_holds(
    pg_service, postgres_env, postgres_url, clock
):
    schema = postgres_env["POSTGRES_SCHEMA"]
    pool = pg_service.recorder.datastore.pool
    read = log_reader(pg_service)
    end = record_history(pg_service, clock, cycles=4)
    live = PostgresViewStore(ToyView(), pool, schema=schema)
    live.apply(read(0, 40))
    scratch = live.begin_rebuild()
    ViewRunner(scratch, read).catch_up()
    results: dict[str, Any] = {}

    def waiting_on_locks() -> int:
        with psycopg.connect(postgres_url) as conn:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s"
            return int(conn.execute(sql, [f"%{schema}%"]).fetchone()[0])

    with psycopg.connect(postgres_url) as reader:  # a reader of the live view holds up the swap's DROP TABLE
        reader.execute(f'SELECT count(*) FROM "{schema}".view_toy_threads').fetchone()
        swap = threading.Thread(target=lambda: results.update(swapped=live.swap_in(scratch)))
        swap.start()
        eventually(lambda: waiting_on_locks() == 1)  # swap_in holds the tracking row, waits for the reader
        runner = threading.Thread(target=lambda: results.update(applied=live.apply(read(40, 30))))
        runner.start()
        eventually(lambda: waiting_on_locks() == 2)  # the runner waits for the tracking row
        reader.rollback()
        swap.join(timeout=10)
        runner.join(timeout=10)
    assert results == {"swapped": None, "applied": 0}
    assert live.position() == end
    assert live.snapshot() == replayed(pg_service)


class SplitReader(LogPages):
    """The host's ``PageReader`` over the service's log, saying which thread fetched each page."""

    def __init__(self, service: Any) -> None:
        super().__init__(service)
        self.fetched: list[tuple[int, str]] = []
        self.fetching: dict[int, threading.Event] = {}
        self.fail_after: int | None = None

    def fetch(self, after: int, limit: int) -> Any:
        self.fetched.append((after, threading.current_thread().name))
        self.fetching.setdefault(after, threading.Event()).set()
        if self.fail_after is not None and after >= self.fail_after:
            raise ConnectionError(f"the log went away after {after}")
        return super().fetch(after, limit)


class WaitsForTheNextFetch(CountingStore):
    """Applies a page only once the next page's fetch has begun (or 5 s have passed, and it says so);
    the page that ends the log has no next page."""

    def __init__(self, store: Any, reader: SplitReader, end: int) -> None:
        super().__init__(store)
        self.reader, self.end, self.overlapped = reader, end, []

    def apply(self, batch: Sequence[Any], through: int | None = None) -> int:
        last = batch[-1][0] if through is None else through
        if last < self.end:
            self.overlapped.append(self.reader.fetching.setdefault(last, threading.Event()).wait(timeout=5.0))
        return super().apply(batch, through)


def test_a_runner_reading_ahead_fetches_the_next_page_while_it_applies_one_and_builds_the_same_view(
    service, clock, make_store
):
    end = record_history(service, clock, cycles=3)
    reader = SplitReader(service)
    store = WaitsForTheNextFetch(make_store(prefix="ahead"), reader, end)
    assert ViewRunner(store, reader, batch_size=10, read_ahead=True).catch_up() == end
    assert store.overlapped == [True] * (len(store.batches) - 1) and len(store.batches) == -(-end // 10)
    assert reader.fetched[0][1] == threading.current_thread().name
    assert {name for _, name in reader.fetched[1:]} == {"fetch-toy_0"}
    plain = make_store(prefix="plain")
    ViewRunner(plain, reader, batch_size=10).catch_up()
    assert store.store.snapshot() == plain.snapshot() == replayed(service)
    assert not [t for t in threading.enumerate() if t.name.startswith("fetch-")]


def test_a_fetch_ahead_that_fails_raises_from_catch_up_and_the_view_keeps_the_pages_before_it(
    service, clock, make_store
):
    end = record_history(service, clock, cycles=3)
    reader = SplitReader(service)
    first = [position for position, _ in reader(0, 10)]
    reader.fail_after = first[-1]
    store = make_store(prefix="broken")
    with pytest.raises(ConnectionError, match="the log went away"):
        ViewRunner(store, reader, batch_size=10, read_ahead=True).catch_up()
    assert store.position() == first[-1] < end
    assert not [t for t in threading.enumerate() if t.name.startswith("fetch-")]


@pytest.mark.parametrize("sizes", [{"batch_size": 0}, {"follow_batch_size": 0}, {"batch_size": -1}])
def test_a_batch_size_below_one_is_refused_and_one_is_accepted(service, sizes):
    store = MemoryViewStore(ToyView())
    with pytest.raises(ValueError, match="batch sizes must be positive"):
        ViewRunner(store, log_reader(service), **sizes)
    ones = dict.fromkeys(sizes, 1)
    accepted = ViewRunner(store, log_reader(service), **ones)
    expected = {"batch_size": 1000, "follow_batch_size": 100, **ones}
    assert {"batch_size": accepted.batch_size, "follow_batch_size": accepted.follow_batch_size} == expected
