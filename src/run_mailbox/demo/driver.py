"""The demo's driver: submits the plan, runs the workers and the reviewer, interrupts on schedule."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from run_mailbox.demo.reviewer import Reviewer, count_interrupt
from run_mailbox.demo.workers import (
    POLL_S,
    Plan,
    PlannedInterrupt,
    Tally,
    Worker,
    WorkerConfig,
    checkpoint,
    message,
    text,
)
from run_mailbox.domain.values import DispatchStatus
from run_mailbox.infrastructure.service import MailboxService


class Driver:
    """Submits the plan, starts the workers and the reviewer, fires the interrupts and
    waits for the end."""

    def __init__(self, service: MailboxService, plan: Plan, workers: int, seed: int) -> None:
        self.service = service
        self.tally = Tally()
        self.stop = threading.Event()
        config = WorkerConfig(seed=seed)
        self.reviewer = Reviewer(service, seed, self.tally, self.stop)
        self.workers = [
            Worker(service, f"worker-{n}", config, self.tally, self.reviewer, self.stop) for n in range(workers)
        ]
        self.runs = plan.runs
        self.pending = list(plan.interrupts)
        self.run_ids: list[str] = []

    def submit(self, thread_id: str, run_id: str, priority: int = 128) -> None:
        dispatch_id = f"dispatch-{run_id.removeprefix('run-')}"
        self.service.submit(thread_id, run_id, priority=priority, dispatch_id=dispatch_id)
        self.tally.add("submitted")
        self.run_ids.append(run_id)
        checkpoint(
            self.service, self.tally, thread_id, run_id, [message(run_id, 1, "user", text(f"Please do {run_id}."))]
        )

    def run(self, console: Console, time_limit: float) -> bool:
        """Submits the plan and works it off; True when every run finished in time."""
        for run in self.runs:
            self.submit(run.thread_id, run.run_id, run.priority)
        deadline = time.monotonic() + time_limit
        threads: list[threading.Thread] = [self.reviewer, *self.workers]
        for thread in threads:
            thread.start()
        columns = (TextColumn("runs finished"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        try:
            with Progress(*columns, console=console) as progress:
                task = progress.add_task("runs", total=self.tally["submitted"])
                while not self._finished(progress, task):
                    if time.monotonic() > deadline or self.failure() is not None:
                        return False
                    time.sleep(POLL_S)
            return True
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()

    def _finished(self, progress: Progress, task: TaskID) -> bool:
        """Fires the next due interrupt, or says whether every run is done: no dispatch open
        and no suspended run still waiting for its decisions (read before and after the
        counts, so a suspension in between is noticed)."""
        waiting, generation = self.reviewer.snapshot()
        counts = self.service.count_by_status()
        terminal = sum(n for status, n in counts.items() if DispatchStatus(status).is_terminal)
        total = self.tally["submitted"]
        done = max(0, min(total, terminal - self.tally["suspensions"]))  # a suspension acks a dispatch, not a run
        progress.update(task, completed=done, total=total)
        if self.pending and done >= self.pending[0].at_fraction * total:
            self._interrupt(self.pending.pop(0))
            return False
        idle = counts[DispatchStatus.QUEUED] == 0 and counts[DispatchStatus.CLAIMED] == 0
        return not self.pending and idle and waiting == 0 and self.reviewer.snapshot()[1] == generation

    def _interrupt(self, planned: PlannedInterrupt) -> None:
        count_interrupt(self.tally, self.service.interrupt(planned.thread_id), by="plan")
        if planned.resubmit:
            self.submit(planned.thread_id, f"run-{planned.thread_id.removeprefix('thread-')}-after-interrupt")
            self.tally.add("fresh_runs")

    def failure(self) -> Exception | None:
        threads: list[Worker | Reviewer] = [self.reviewer, *self.workers]
        return next((t.failure for t in threads if t.failure is not None), None)
