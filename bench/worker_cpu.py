"""Where a Worker's CPU goes, beside the bare loop, on the in-memory recorder.

    /work/main/.venv/bin/python -m bench.worker_cpu [--jobs 2000] [--rounds 8]

One service on the in-memory recorder (the Python alone, no database). The rounds alternate between the two
consumers ``bench.peers`` runs beside pgqueuer: ``--jobs`` runs are submitted, each on a thread of its own, then
drained either by the bare loop (``claim_next(limit=10, start=True)`` -> ``ack_many``, one thread) or by one of
run-mailbox's ``Worker`` (concurrency 10, a no-op async handler). Each round prints the process's CPU a job
(user and system, ``os.times``), and how much of it ran inside the mailbox's commands (each command's own
thread CPU, taken by a command observer); the rest is the consumer's own: for the Worker, its event loop, its
attempts' tasks and the hops between the loop and the service's thread pool.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from bench import _peer_ours as ours
from run_mailbox.infrastructure.observe import CommandObserver, Observation

BATCH = 10


class CommandCpu(CommandObserver):
    """Adds up the thread CPU of every command the service runs (the structured logs as before)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.commands = 0
        self._lock = threading.Lock()

    def started(self, seen: Observation) -> None:
        super().started(seen)
        seen.extra = time.thread_time()

    def finished(self, seen: Observation) -> None:
        spent = time.thread_time() - seen.extra
        with self._lock:
            self.seconds += spent
            self.commands += 1
        super().finished(seen)

    def take(self) -> tuple[float, int]:
        with self._lock:
            taken = self.seconds, self.commands
            self.seconds, self.commands = 0.0, 0
        return taken


@dataclass
class Round:
    consumer: str
    cpu_us: float  # the process's CPU a job, user and system
    system_us: float
    in_commands_us: float
    commands_per_batch: float

    @property
    def outside_us(self) -> float:
        return self.cpu_us - self.in_commands_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000, help="runs submitted, then drained, per round")
    parser.add_argument("--rounds", type=int, default=8, help="rounds, the two consumers alternating")
    args = parser.parse_args()
    console = Console(width=120)
    rounds: list[Round] = []
    with ours.in_memory_service() as service:
        observer = CommandCpu()
        service.runner.observer = observer
        for r in range(args.rounds):
            consumer = "bare loop" if r % 2 == 0 else "Worker"
            for i in range(args.jobs):
                service.submit(f"t{r}-{i}", f"r{r}-{i}")
            observer.take()
            before = os.times()
            if consumer == "Worker":
                _, acked = ours.drain_with_workers(service, 1, BATCH, args.jobs)
            else:
                _, acked = ours.drain(service, 1, BATCH)
            after = os.times()
            if acked != args.jobs:
                raise RuntimeError(f"{consumer} acked {acked} of {args.jobs}")
            in_commands, commands = observer.take()
            user, system = after.user - before.user, after.system - before.system
            rounds.append(
                Round(
                    consumer,
                    1e6 * (user + system) / args.jobs,
                    1e6 * system / args.jobs,
                    1e6 * in_commands / args.jobs,
                    commands * BATCH / args.jobs,
                )
            )
            console.log(f"round {r + 1}: {consumer}, {rounds[-1].cpu_us:.0f} us of CPU a job")
    table = Table(title=f"CPU a job on the in-memory recorder (us; median of {args.rounds // 2} rounds, and range)")
    for column in ("consumer", "CPU a job", "of it system", "inside the commands", "the consumer's own", "commands"):
        table.add_column(column, justify="left" if column == "consumer" else "right")
    for consumer in ("bare loop", "Worker"):
        mine = [r for r in rounds if r.consumer == consumer]
        if not mine:
            continue
        table.add_row(
            consumer,
            _spread([r.cpu_us for r in mine]),
            _spread([r.system_us for r in mine]),
            _spread([r.in_commands_us for r in mine]),
            _spread([r.outside_us for r in mine]),
            f"{statistics.median(r.commands_per_batch for r in mine):.1f} a batch",
        )
    console.print(table)


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"


if __name__ == "__main__":
    main()
