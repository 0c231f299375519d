"""Stopping a worker: in-process with stop(), and `mailbox worker` in a real subprocess sent SIGTERM/SIGINT
on real Postgres. Running handlers get the grace period; those still running after it are released
(nacked "worker shutting down", due again at once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from run_mailbox import DispatchStatus, MailboxService
from run_mailbox.cli.main import app
from run_mailbox.worker import Job, Worker
from tests.worker_support import running, wait_until

ROOT = Path(__file__).resolve().parents[1]
SHUTTING_DOWN = "worker shutting down"


@pytest.fixture
def memory() -> Iterator[MailboxService]:
    service = MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield service
    service.close()


def test_stop_lets_a_running_handler_finish_within_the_grace_period(memory):
    stopping_seen = []

    def handler(job: Job) -> None:
        wait_until(lambda: job.stopping, timeout=5)
        stopping_seen.append(job.stopping)
        time.sleep(0.3)

    worker = Worker(memory, handler, grace_s=5)
    worker.start()
    d = memory.submit("thread-1", "run-1")
    wait_until(lambda: memory.get_dispatch(d.dispatch_id).status is DispatchStatus.CLAIMED)
    begun = time.monotonic()
    worker.stop()
    assert worker.join(10)
    assert time.monotonic() - begun < 3
    assert stopping_seen == [True] and memory.get_dispatch(d.dispatch_id).status is DispatchStatus.ACKED
    memory.submit("thread-2", "run-2")  # a stopped worker claims nothing more
    time.sleep(0.2)
    assert worker.stats["claimed"] == 1 and worker.stats["acked"] == 1


def test_handlers_still_running_after_the_grace_period_are_released_at_once(memory):
    jobs: list[Job] = []
    gone = threading.Event()

    def handler(job: Job) -> None:
        jobs.append(job)
        job.wait(30)  # until cancelled
        gone.set()

    with running(memory, handler, grace_s=0.3) as worker:
        d = memory.submit("thread-1", "run-1")
        wait_until(lambda: memory.get_dispatch(d.dispatch_id).status is DispatchStatus.CLAIMED)
        begun = time.monotonic()
        worker.stop()
        assert worker.join(5) and time.monotonic() - begun < 2
    released = memory.get_dispatch(d.dispatch_id)
    assert released.status is DispatchStatus.QUEUED and released.last_error == SHUTTING_DOWN
    assert released.attempt_count == 1 and released.available_at <= memory.clock()  # no backoff
    assert gone.wait(2) and jobs[0].cancelled and jobs[0].cancel_reason == SHUTTING_DOWN
    assert worker.stats["released"] == 1


# ---------------------------------------------------------------- `mailbox worker` in a subprocess, on Postgres


@pytest.fixture
def spawn(postgres_env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[str]] = []

    def start(*options: str) -> subprocess.Popen[str]:
        env = {
            **os.environ,
            "MAILBOX_DATABASE_URL": postgres_env["MAILBOX_DATABASE_URL"],
            "POSTGRES_SCHEMA": postgres_env["POSTGRES_SCHEMA"],
            "WORKER_TEST_DIR": str(tmp_path),
            "PYTHONUNBUFFERED": "1",
        }
        command = [sys.executable, "-m", "run_mailbox.cli.main", "--postgres", "worker", "tests.worker_support:sleepy"]
        process = subprocess.Popen(
            [*command, "--lease-ms", "2000", *options],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def started(tmp_path: Path, run_id: str, process: subprocess.Popen[str]) -> None:
    marker = tmp_path / f"{run_id}.started"
    deadline = time.monotonic() + 60  # the child imports and connects first
    while not marker.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the handler never started:\n{process.communicate()[0]}")
        time.sleep(0.02)


def exits_within(process: subprocess.Popen[str], seconds: float) -> tuple[int, float, str]:
    begun = time.monotonic()
    try:
        output, _ = process.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"still running {seconds} s after the signal:\n{process.communicate()[0]}")
    return process.returncode, time.monotonic() - begun, output


@pytest.mark.postgres
def test_sigterm_lets_the_running_handler_finish_and_exits_cleanly(spawn, postgres_env, tmp_path):
    service = MailboxService(env=postgres_env)
    try:
        process = spawn("--grace", "20")
        d = service.submit("thread-1", "run-1.0")  # its handler takes 1 s
        started(tmp_path, "run-1.0", process)
        process.send_signal(signal.SIGTERM)
        code, took, output = exits_within(process, 15)
        assert code == 0, output
        assert took < 10, output  # the handler's second, then the ack: not the 20 s of grace
        assert (tmp_path / "run-1.0.finished").exists()
        assert service.get_dispatch(d.dispatch_id).status is DispatchStatus.ACKED
        assert "stopped" in output and "'acked': 1" in output
    finally:
        service.close()


@pytest.mark.postgres
def test_sigterm_releases_a_handler_that_outlives_the_grace_period(spawn, postgres_env, tmp_path):
    service = MailboxService(env=postgres_env)
    try:
        process = spawn("--grace", "0.5")
        d = service.submit("thread-1", "run-60")  # its handler would take a minute
        started(tmp_path, "run-60", process)
        process.send_signal(signal.SIGTERM)
        code, took, output = exits_within(process, 15)
        assert code == 0 and took < 8, output
        released = service.get_dispatch(d.dispatch_id)
        assert released.status is DispatchStatus.QUEUED and released.last_error == SHUTTING_DOWN
        assert released.available_at <= service.clock() and released.attempt_count == 1
        assert not (tmp_path / "run-60.finished").exists()
        assert "'released': 1" in output
    finally:
        service.close()


@pytest.mark.postgres
def test_a_second_signal_ends_the_grace_period(spawn, postgres_env, tmp_path):
    service = MailboxService(env=postgres_env)
    try:
        process = spawn("--grace", "60")
        d = service.submit("thread-1", "run-60")
        started(tmp_path, "run-60", process)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert process.poll() is None  # waiting for the handler, within the grace period
        process.send_signal(signal.SIGINT)
        code, _, output = exits_within(process, 15)
        assert code == 0, output
        assert service.get_dispatch(d.dispatch_id).last_error == SHUTTING_DOWN
    finally:
        service.close()


def test_the_command_refuses_a_handler_it_cannot_import(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "m.db")
    for spec, message in [
        ("no_colon", "module:function"),
        ("no_such_module_xyz:run", "cannot import"),
        ("tests.worker_support:nothing_here", "has no"),
        ("tests.worker_support:SHUTTING", "has no"),
    ]:
        result = runner.invoke(app, ["--db", db, "worker", spec])
        assert result.exit_code == 2, (spec, result.output)
        assert message in " ".join(result.output.split()), (spec, result.output)
