"""``run_demo``: plan, drive the workers and the reviewer, then report and check against the log."""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.console import Console

from run_mailbox.demo.check import expectations, log_counts, resumed_ends, runs_not_done
from run_mailbox.demo.driver import Driver
from run_mailbox.demo.report import summary_table
from run_mailbox.demo.store import demo_store, open_service, where
from run_mailbox.demo.workers import make_plan
from run_mailbox.domain.values import DispatchStatus
from run_mailbox.infrastructure.service import MailboxService


def run_demo(
    console: Console,
    env: Mapping[str, str] | None,
    *,
    threads: int,
    workers: int,
    seed: int,
    time_limit: float,
    keep: bool = False,
) -> int:
    """Runs the demo; returns the exit status (0 when it finished and the log agrees)."""
    plan = make_plan(threads, seed)
    with demo_store(env, keep, console) as store:
        service = open_service(store, workers)
        try:
            console.print(f"demo: {len(plan.runs)} runs on {threads} threads, {workers} workers, seed {seed}")
            console.print(f"log: {where(store)}", highlight=False, soft_wrap=True)
            started = time.monotonic()
            driver = Driver(service, plan, workers, seed)
            finished = driver.run(console, time_limit)
            return _report(console, service, driver, finished, time.monotonic() - started, time_limit)
        finally:
            service.close()


def _report(
    console: Console, service: MailboxService, driver: Driver, finished: bool, elapsed: float, limit: float
) -> int:
    failure = driver.failure()
    if failure is not None:
        console.print(f"[red]a worker failed: {type(failure).__name__}: {failure}[/]")
        return 1
    statuses = service.count_by_status()
    ends = resumed_ends(service, driver.reviewer.resumed_runs)
    events = service.recorder.max_notification_id() or 0
    console.print(summary_table(driver.tally, statuses, ends, events, elapsed))
    if not finished:
        left = statuses[DispatchStatus.QUEUED] + statuses[DispatchStatus.CLAIMED]
        console.print(f"[red]time limit of {limit:g} s reached with {left} dispatches unfinished[/]")
        return 1
    checks = expectations(driver.tally, statuses, log_counts(service))
    checks.append(("no run left undone", 0, runs_not_done(service, driver.run_ids)))
    mismatches = [(what, want, got) for what, want, got in checks if want != got]
    if mismatches:
        console.print("[red]checked against the log: MISMATCH[/]")
        for what, want, got in mismatches:
            console.print(f"[red]  {what}: expected {want}, the log has {got}[/]")
        return 1
    console.print(f"[green]checked against the log: OK[/] ({len(checks)} counts agree)")
    return 0
