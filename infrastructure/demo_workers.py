"""The demo's job: a seeded plan, the worker threads, and the driver that runs them.

What happens to an attempt is decided by its fate, a seeded function of the run and the
attempt number, so a demo is reproducible (up to thread interleaving) whichever worker
picks the run up. Workers and driver count what they did in a shared :class:`Tally`,
which the demo then checks against the event log.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from domain.dispatch import DispatchRecord
from domain.errors import DispatchSuperseded, MailboxError
from domain.values import DispatchStatus
from infrastructure.service import MailboxService

LEASE_MS = 200
"""Short, so that a claim abandoned by a dying worker is reclaimed within the demo."""
PRIORITIES = (0, 64, 128, 128, 128, 200, 255)
POLL_S = 0.05


@dataclass(frozen=True)
class PlannedRun:
    thread_id: str
    run_id: str
    priority: int


@dataclass(frozen=True)
class PlannedInterrupt:
    thread_id: str
    at_fraction: float
    """Fires once this fraction of the runs has finished."""
    resubmit: bool


@dataclass(frozen=True)
class Plan:
    runs: list[PlannedRun]
    interrupts: list[PlannedInterrupt]


def make_plan(threads: int, seed: int) -> Plan:
    """2 to 4 runs on each thread with varied priorities; about one thread in eight interrupted,
    every other one of those then given a fresh run."""
    rng = random.Random(seed)
    runs = []
    thread_ids = [f"thread-{t:03d}" for t in range(threads)]
    for t, thread_id in enumerate(thread_ids):
        for i in range(rng.randint(2, 4)):
            runs.append(PlannedRun(thread_id, f"run-{t:03d}-{i}", rng.choice(PRIORITIES)))
    chosen = rng.sample(thread_ids, k=max(1, threads // 8))
    interrupts = [PlannedInterrupt(t, rng.uniform(0.05, 0.35), resubmit=i % 2 == 0) for i, t in enumerate(chosen)]
    return Plan(runs, sorted(interrupts, key=lambda p: p.at_fraction))


class Fate(StrEnum):
    ACK = "ack"
    NACK = "nack"
    DEAD_LETTER = "dead_letter"
    DIE = "die"


# Cumulative odds of each fate for one attempt: most attempts succeed.
_ODDS = ((0.70, Fate.ACK), (0.85, Fate.NACK), (0.90, Fate.DEAD_LETTER), (1.0, Fate.DIE))


def fate_of(seed: int, run_id: str, attempt: int) -> tuple[Fate, float]:
    """The fate of one attempt of a run and how long its work takes (seconds)."""
    rng = random.Random(f"{seed}/{run_id}/{attempt}")
    roll = rng.random()
    fate = next(f for bound, f in _ODDS if roll < bound)
    return fate, rng.uniform(0.002, 0.015)


class Tally:
    """Thread-safe counters of what the workers and the demo driver did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.started_runs: set[str] = set()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] += amount

    def started(self, run_id: str) -> None:
        with self._lock:
            self.counts["starts"] += 1
            self.started_runs.add(run_id)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self.counts[name]

    def races(self) -> dict[str, int]:
        with self._lock:
            return {k.removeprefix("race:"): v for k, v in sorted(self.counts.items()) if k.startswith("race:")}


@dataclass(frozen=True)
class WorkerConfig:
    seed: int
    lease_ms: int = LEASE_MS
    idle_s: float = 0.01


class Worker(threading.Thread):
    """Loops until ``stop`` is set: reclaim, find work, start it, then meet the attempt's fate."""

    def __init__(
        self, service: MailboxService, name: str, config: WorkerConfig, tally: Tally, stop: threading.Event
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.service = service
        self.config = config
        self.tally = tally
        self.stop = stop
        self.failure: Exception | None = None
        self._order = random.Random(f"{config.seed}/{name}")

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self._step():
                    self.stop.wait(self.config.idle_s)
        except Exception as exc:  # reported by the demo driver, which then fails
            self.failure = exc

    def _step(self) -> bool:
        """One round; True when a dispatch was claimed."""
        try:
            self._reclaim()
        except MailboxError as exc:
            self.tally.add(f"race:reclaim {type(exc).__name__}")
        try:
            claimed = self._find_work()
        except MailboxError as exc:
            self.tally.add(f"race:claim {type(exc).__name__}")
            return False
        if claimed is None:
            return False
        self._work_on(claimed)
        return True

    def _reclaim(self) -> None:
        for record in self.service.reclaim_expired_leases(limit=100):
            requeued = record.status is DispatchStatus.QUEUED
            self.tally.add("reclaims_requeued" if requeued else "reclaims_exhausted")

    def _find_work(self) -> DispatchRecord | None:
        threads = self.service.queued_thread_ids()
        self._order.shuffle(threads)  # workers spread over the threads instead of all racing for the first
        for thread_id in threads:
            claimed = self.service.claim(thread_id, consumer_id=self.name, lease_ms=self.config.lease_ms)
            if claimed is not None:
                self.tally.add("claims")
                return claimed
        return None

    def _work_on(self, claimed: DispatchRecord) -> None:
        token = claimed.claim_token or ""
        fate, seconds = fate_of(self.config.seed, claimed.run_id, claimed.attempt_count)
        step = "record_start"
        try:
            self.service.record_start(claimed.dispatch_id, claim_token=token)
            self.tally.started(claimed.run_id)
            self.stop.wait(seconds)
            step = fate.value
            self._settle(claimed, token, fate)
        except DispatchSuperseded:
            self.tally.add("fenced")  # an interrupt advanced the thread's epoch under this claim
        except MailboxError as exc:
            self.tally.add(f"race:{step} {type(exc).__name__}")

    def _settle(self, claimed: DispatchRecord, token: str, fate: Fate) -> None:
        dispatch_id, attempt = claimed.dispatch_id, claimed.attempt_count + 1
        if fate is Fate.ACK:
            self.service.ack(dispatch_id, claim_token=token)
            self.tally.add("acks")
        elif fate is Fate.NACK:
            record = self.service.nack(dispatch_id, claim_token=token, error=f"transient failure on attempt {attempt}")
            self.tally.add("nacks_requeued" if record.status is DispatchStatus.QUEUED else "nacks_exhausted")
        elif fate is Fate.DEAD_LETTER:
            self.service.dead_letter(dispatch_id, claim_token=token, error=f"permanent failure on attempt {attempt}")
            self.tally.add("dead_letters")
        else:
            self.tally.add("abandoned")  # the worker "dies": the lease runs out and a sweep reclaims it


class Driver:
    """Submits the plan, starts the workers, fires the interrupts and waits for the end."""

    def __init__(self, service: MailboxService, plan: Plan, workers: int, seed: int) -> None:
        self.service = service
        self.tally = Tally()
        self.stop = threading.Event()
        config = WorkerConfig(seed=seed)
        self.workers = [Worker(service, f"worker-{n}", config, self.tally, self.stop) for n in range(workers)]
        self.runs = plan.runs
        self.pending = list(plan.interrupts)

    def submit(self, thread_id: str, run_id: str, priority: int = 128) -> None:
        dispatch_id = f"dispatch-{run_id.removeprefix('run-')}"
        self.service.submit(thread_id, run_id, priority=priority, dispatch_id=dispatch_id)
        self.tally.add("submitted")

    def run(self, console: Console, time_limit: float) -> bool:
        """Submits the plan and works it off; True when every run finished in time."""
        for run in self.runs:
            self.submit(run.thread_id, run.run_id, run.priority)
        deadline = time.monotonic() + time_limit
        for worker in self.workers:
            worker.start()
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
            for worker in self.workers:
                worker.join()

    def _finished(self, progress: Progress, task: TaskID) -> bool:
        """Fires the next due interrupt, or says whether every dispatch is terminal."""
        counts = self.service.count_by_status()
        done = sum(n for status, n in counts.items() if DispatchStatus(status).is_terminal)
        total = self.tally["submitted"]
        progress.update(task, completed=done, total=total)
        if self.pending and done >= self.pending[0].at_fraction * total:
            self._interrupt(self.pending.pop(0))
            return False
        return not self.pending and counts[DispatchStatus.QUEUED] == 0 and counts[DispatchStatus.CLAIMED] == 0

    def _interrupt(self, planned: PlannedInterrupt) -> None:
        result = self.service.interrupt(planned.thread_id)
        self.tally.add("interrupts")
        self.tally.add("superseded_queued", result.superseded_count)
        self.tally.add("interrupts_active", int(result.active_dispatch is not None))
        if planned.resubmit:
            self.submit(planned.thread_id, f"run-{planned.thread_id.removeprefix('thread-')}-after-interrupt")
            self.tally.add("fresh_runs")

    def failure(self) -> Exception | None:
        return next((w.failure for w in self.workers if w.failure is not None), None)
