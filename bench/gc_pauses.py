"""Python's garbage collector in a service that has run long enough to fill its aggregate cache.

    /work/main/.venv/bin/python -m bench.gc_pauses [--rounds 16] [--jobs 1000] [--shapes worker,bare] [--no-host-heap]

One service on a fresh Postgres schema; each round submits ``--jobs`` runs (each on a thread of its
own), then drains them with one consumer: run-mailbox's ``Worker`` (concurrency 10, a no-op async
handler) or the bare loop of ``bench.peers`` (``claim_next(limit=10, start=True)`` then ``ack_many``).
A ``gc.callbacks`` hook times every collection. With the default 20,000 cached aggregates the cache
is full after about 7,000 runs, so the figures are over the second half of the rounds: jobs/s over
them, the share of their time spent collecting, the full collections and the longest one.

By default the process first imports what the other benchmarks import (pgqueuer, DBOS, SQLAlchemy),
as a host imports its web framework and SDKs: a full collection walks all of it.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import _peer_ours as ours
from bench._common import ensure_bench_database


class Collections:
    """Times the collections that run while ``counting`` (through ``gc.callbacks``, while installed)."""

    def __init__(self) -> None:
        self.counting = False
        self.seconds = 0.0
        self.full = 0
        self.longest_full = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if not self.counting:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        took = time.perf_counter() - self._started
        self.seconds += took
        if info["generation"] == 2:
            self.full += 1
            self.longest_full = max(self.longest_full, took)

    def __enter__(self) -> Collections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self)


def steady_state(shape: str, rounds: int, jobs: int) -> dict[str, float]:
    """Rounds of submits and drains; the figures of the second half."""
    drained, seconds = 0, 0.0
    with ours.fresh_service(1) as service, Collections() as collections:
        for r in range(rounds):
            for i in range(jobs):
                service.submit(f"t{r}-{i}", f"r{r}-{i}")
            measured = r >= rounds // 2  # the second half: the drains only
            collections.counting = measured
            start = time.perf_counter()
            if shape == "worker":
                _, acked = ours.drain_with_workers(service, 1, 10, jobs)
            else:
                _, acked = ours.drain(service, 1, 10)
            collections.counting = False
            if measured:
                seconds += time.perf_counter() - start
                drained += acked
        cached = len(service.cache)
    return {
        "rate": drained / seconds,
        "share": collections.seconds / seconds,
        "full": collections.full,
        "longest": collections.longest_full,
        "cached": cached,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=1000, help="runs per round")
    parser.add_argument("--shapes", default="worker,bare", help="worker, bare or both")
    parser.add_argument("--no-host-heap", action="store_true", help="do not import the peers' packages first")
    args = parser.parse_args()
    if not args.no_host_heap:
        import dbos  # noqa: F401
        import pgqueuer  # noqa: F401
        import sqlalchemy  # noqa: F401
    ensure_bench_database()
    console = Console()
    gc.collect()
    console.log(f"{len(gc.get_objects()):,} objects tracked at the start")
    table = Table(title=f"the second half of {args.rounds} rounds of {args.jobs:,} runs")
    for column in ("consumer", "cached aggregates", "jobs/s", "time collecting", "full collections", "longest"):
        table.add_column(column, justify="left" if column == "consumer" else "right")
    for shape in args.shapes.split(","):
        figures = steady_state(shape, args.rounds, args.jobs)
        table.add_row(
            "the Worker" if shape == "worker" else "bare loop",
            f"{figures['cached']:,.0f}",
            f"{figures['rate']:,.0f}",
            f"{figures['share']:.0%}",
            f"{figures['full']:.0f}",
            f"{figures['longest'] * 1000:.0f} ms",
        )
    console.print(table)


if __name__ == "__main__":
    main()
