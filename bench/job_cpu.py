"""Where a worker-loop job's time goes, beside pgqueuer's: the client's CPU, the server's CPU and the rest.

    /work/main/.venv/bin/python -m bench.job_cpu [--jobs 8000] [--rounds 4] [--consumers 1] [--worker]

pgqueuer's worker loop and run-mailbox's (the bare loop, or its ``Worker`` with ``--worker``), as ``bench.peers``
runs them: one producer enqueues the jobs one transaction each, then the consumers drain them ten at a time. The
rounds alternate the two sides on the same Postgres. For each phase, in microseconds a job: the wall time, this
process's CPU (the client: the producer's or the consumers' code and driver), the CPU of every Postgres process
on this machine (the server: the statements, the WAL writer, autovacuum) and the rest of the wall time, when
neither side was on a CPU (a flush, the wire, the scheduler). With 2 vCPUs client and server can run at once, so
the rest can go below zero; on 2 vCPUs they also compete, so a server's CPU slows the client down.
"""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from bench import _peer_ours as ours
from bench import _peer_pgqueuer as pgq
from bench._common import ensure_bench_database
from bench._cpu import Clocks, PhaseClocks
from bench._peer_common import Phases
from bench.peers import alternate

BATCH = 10
PHASES = ("enqueue", "process")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=8000, help="jobs per side, over all rounds")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, the sides alternating")
    parser.add_argument("--consumers", type=int, default=1)
    parser.add_argument("--worker", action="store_true", help="drain with run-mailbox's Worker, not the bare loop")
    args = parser.parse_args()
    ensure_bench_database()
    console = Console(width=120)
    theirs_clocks, our_clocks = PhaseClocks(), PhaseClocks()
    theirs, mine = alternate(
        pgq.worker_loop(args.consumers, BATCH, clocks=theirs_clocks),
        ours.worker_loop(args.consumers, BATCH, with_workers=args.worker, clocks=our_clocks),
        args.jobs,
        args.rounds,
    )
    if theirs_clocks.phases["enqueue"].server is None:
        console.print("[yellow]no Postgres process can be read here: the server's CPU is not shown[/]")
    ours_name = "run-mailbox, Worker" if args.worker else "run-mailbox, bare loop"
    table = Table(
        title=f"A job's time in microseconds ({args.jobs:,} jobs a side, {args.consumers} consumer(s), batch {BATCH}, "
        f"{args.rounds} alternating rounds)"
    )
    for column in ("system", "phase", "wall", "client CPU", "server CPU", "neither"):
        table.add_column(column, justify="left" if column in ("system", "phase") else "right")
    figures = {}
    for name, phases, clocks in (("pgqueuer", theirs, theirs_clocks), (ours_name, mine, our_clocks)):
        for phase in PHASES:
            figures[name, phase] = per_job(phases, phase, clocks.phases[phase])
            table.add_row(name, phase, *(f"{v:,.0f}" if v is not None else "-" for v in figures[name, phase]))
    for phase in PHASES:
        a, b = figures["pgqueuer", phase], figures[ours_name, phase]
        ratios = [f"{y / x:.2f}x" if x and y is not None else "-" for x, y in zip(a[:3], b[:3], strict=True)]
        table.add_row("ours / theirs", phase, *ratios, "-")  # no ratio of what can go below zero
    console.print(table)
    console.print("neither = wall - client CPU - server CPU: waits on no CPU here (the flush, the wire), or below zero")
    console.print("when the two sides ran at once on the two CPUs.")


def per_job(phases: Phases, phase: str, clocks: Clocks) -> tuple[float, float, float | None, float | None]:
    wall = phases.enqueue_seconds if phase == "enqueue" else phases.process_seconds
    us = 1e6 / phases.jobs
    server = None if clocks.server is None else clocks.server * us
    neither = None if server is None else wall * us - clocks.client * us - server
    return wall * us, clocks.client * us, server, neither


if __name__ == "__main__":
    main()
