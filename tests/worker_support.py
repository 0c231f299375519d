"""Shared by the worker tests: a worker in the background, waiting for a condition, handlers for subprocesses.

The handlers at the bottom are what ``mailbox worker tests.worker_support:...`` runs in the SIGTERM tests:
each one touches ``$WORKER_TEST_DIR/<run_id>.started`` when it starts and ``.finished`` when it returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from run_mailbox import MailboxService, Message, TextBlock
from run_mailbox.worker import Job, Worker


@contextmanager
def running(service: MailboxService, handler: Any, **options: Any) -> Iterator[Worker]:
    """A worker serving in a background thread for the block, then stopped (gracefully) and joined."""
    options.setdefault("lease_ms", 5_000)
    options.setdefault("sweep_interval_s", 0.2)
    worker = Worker(service, handler, **options)
    worker.start()
    assert worker.ready.is_set() and not worker.stopped.is_set()
    try:
        yield worker
    finally:
        worker.stop()
        assert worker.join(30), "the worker did not stop"


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, every: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        time.sleep(every)


def reply(job: Job, text: str = "done") -> list[Message]:
    return [
        Message(message_id=f"{job.dispatch_id}/reply", role="assistant", content=[TextBlock(type="text", text=text)])
    ]


def kinds_of(service: MailboxService, run_id: str) -> list[str]:
    """The canonical event kinds of one run, in log order."""
    return [e.kind for e in service.iter_canonical_events() if e.run_id == run_id]


# ---------------------------------------------------------------- handlers run by `mailbox worker` in a subprocess


def _mark(job: Job, what: str) -> None:
    folder = Path(os.environ["WORKER_TEST_DIR"])
    (folder / f"{job.run_id}.{what}").write_text(str(time.time()))


def sleepy(job: Job) -> list[Message]:
    """Sleeps as many seconds as the run id says after its last dash (``run-0.5``), ignoring cancellation."""
    _mark(job, "started")
    time.sleep(float(job.run_id.rsplit("-", 1)[1]))
    _mark(job, "finished")
    return reply(job)
