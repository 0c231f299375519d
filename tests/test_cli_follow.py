"""``mailbox follow`` as the long-running process it is: a real subprocess that keeps every view current
while runs are written, reports progress, and stops cleanly on SIGTERM or SIGINT (SQLite and Postgres)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from run_mailbox import MailboxService
from run_mailbox.infrastructure.settings import SQLITE

STORE_VARIABLES = ("PERSISTENCE_MODULE", "MAILBOX_DATABASE_URL", "POSTGRES_DBNAME", "SQLITE_DBNAME", "POSTGRES_SCHEMA")


class Follower:
    """``mailbox ... follow [--json]`` in a subprocess, its progress lines read as they come (parsed when JSON).

    stderr is read on a thread of its own too (a child that fills an unread pipe blocks), and the
    child runs with faulthandler on: if it does not stop, SIGABRT makes it print every thread's
    stack, and the test fails with them."""

    def __init__(self, options: list[str], env: dict[str, str], *, json_output: bool = True) -> None:
        command = [sys.executable, "-m", "run_mailbox.cli.main", *options, "follow", "--interval", "0.1"]
        command += ["--json"] if json_output else []
        env = {**env, "PYTHONFAULTHANDLER": "1"}
        self.json_output = json_output
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[Any] = queue.Queue()
        self.seen: list[Any] = []
        self.stderr: list[str] = []
        self.readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(json.loads(line) if self.json_output else line.rstrip("\n"))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def wait_for(self, predicate, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                report = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, "".join(self.stderr)
                continue
            self.seen.append(report)
            if predicate(report):
                return report
        raise AssertionError(f"no such report in {timeout} s; last: {self.seen[-1:]}")

    def stop(self, signum: int, timeout: float = 30.0) -> tuple[int, str]:
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            self.process.wait(timeout=10)
            self._join_readers()
            raise AssertionError(f"follow did not stop in {timeout} s; its threads:\n{''.join(self.stderr)}") from None
        self._join_readers()
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code, "".join(self.stderr)

    def _join_readers(self) -> None:
        for reader in self.readers:
            reader.join(timeout=5)


def caught_up_to(end: int):
    return lambda r: r["log_end"] >= end and all(v["position"] >= end and v["lag"] == 0 for v in r["views"])


def submit_runs(service: MailboxService, thread: str, n: int) -> int:
    for i in range(n):
        service.submit(thread, f"{thread}-run-{i}")
    claimed = service.claim(thread, consumer_id="w")
    service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    service.ack(claimed.dispatch_id, claim_token=claimed.claim_token)
    return service.recorder.max_notification_id() or 0


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in STORE_VARIABLES}


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator[tuple[list[str], dict[str, str], MailboxService]]:
    path = tmp_path / "follow.db"
    service = MailboxService(env={"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": str(path)})
    yield ["--db", str(path)], base_env(), service
    service.close()


@pytest.fixture
def postgres_store(postgres_env) -> Iterator[tuple[list[str], dict[str, str], MailboxService]]:
    service = MailboxService(env=postgres_env)
    yield ["--postgres"], {**base_env(), **postgres_env}, service
    service.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_follow_keeps_every_view_current_and_stops_cleanly_on_a_signal(sqlite_store, signum):
    options, env, service = sqlite_store
    first_end = submit_runs(service, "before", 5)
    follower = Follower(options, env)
    try:
        start = follower.wait_for(lambda r: r["state"] == "following")
        assert {v["view"] for v in start["views"]} >= {"dispatch_queue", "run_status", "canonical_feed"}
        follower.wait_for(caught_up_to(first_end))
        end = submit_runs(service, "while-following", 20)  # written while it follows
        follower.wait_for(caught_up_to(end))
        code, stderr = follower.stop(signum)
    finally:
        if follower.process.poll() is None:
            follower.process.kill()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    last = follower.seen[-1]
    assert last["state"] == "stopped" and caught_up_to(end)(last)
    assert any(r["applied"] > 0 for r in follower.seen)


def test_follow_prints_readable_progress_without_json(sqlite_store):
    options, env, service = sqlite_store
    end = submit_runs(service, "t", 3)
    follower = Follower(options, env, json_output=False)
    try:
        # Signalled only once it follows: a child still importing under load would die of the signal's default.
        follower.wait_for(lambda line: "following: log end" in line and f"dispatch_queue {end} (lag 0)" in line)
        code, stderr = follower.stop(signal.SIGTERM)
    finally:
        if follower.process.poll() is None:
            follower.process.kill()
    assert code == 0, stderr
    assert f"stopped: log end {end};" in follower.seen[-1]
    assert f"dispatch_queue {end} (lag 0)" in follower.seen[-1]


@pytest.mark.postgres
def test_follow_on_postgres_wakes_on_new_events_and_stops_on_sigterm(postgres_store):
    options, env, service = postgres_store
    first_end = submit_runs(service, "before", 3)
    follower = Follower(options, env)
    try:
        follower.wait_for(caught_up_to(first_end))
        for batch in range(3):
            end = submit_runs(service, f"live-{batch}", 5)
            follower.wait_for(caught_up_to(end), timeout=20)
        code, stderr = follower.stop(signal.SIGTERM)
    finally:
        if follower.process.poll() is None:
            follower.process.kill()
    assert code == 0, stderr
    assert follower.seen[-1]["state"] == "stopped"
