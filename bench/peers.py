"""Throughput beside the peers: pgqueuer's worker loop, DBOS's approval round trip and a raw
psycopg transaction, each measured in turn with our equivalent, in one run against the same Postgres.

    /work/main/.venv/bin/python -m bench.peers [--jobs N] [--concurrency 1,4] [--shapes bare,worker] [--quick]

1. worker loop (pgqueuer): one producer enqueues the jobs, one transaction each; then consumers
   dequeue ten at a time, run a no-op and ack. Ours: as many submits (each run on its own
   thread), then consumer threads loop claim_next(limit=10, start=True) -> ack_many (the bare
   loop); and, in a case of its own, as many of run-mailbox's Worker (concurrency 10, a no-op async
   handler: what a host runs, as pgqueuer's QueueManager is). The phases do not overlap:
   end-to-end is jobs / (enqueue + process) seconds; each phase is shown alone too. --jobs N per
   case, over all rounds (so N / rounds are queued when a round's consumers start).
2. approval round trip (DBOS): a workflow waits in recv(topic), the driver sends it the decision
   and awaits its result. Ours: submit -> claim -> record_start -> suspend (1 ticket) -> decide
   -> claim the resume -> record_start -> ack.
3. raw psycopg: one client, one-row INSERT + COMMIT; beside it the median latency of each of our
   commands (1 worker). The aim: each command within 2x of the raw transaction.

Each system gets a fresh schema per case (DBOS its own database, bench_dbos), dropped afterwards.
Within a case both sides are set up first, then the work is cut into --rounds rounds that
alternate the sides (theirs first, then ours first, ...), so that the load other jobs put on a
shared machine hits both alike; each side's figure is over all its rounds.
Install the peers with the ``bench`` extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import operator
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import reduce
from importlib.metadata import version
from typing import TypeVar

import psycopg
from rich.console import Console
from rich.table import Table

from bench import _peer_ours as ours
from bench._common import PG_CONNINFO, ensure_bench_database
from bench._peer_common import Latencies, Phases, Rate

SECTIONS = ("pgqueuer", "dbos", "raw")
LATENCY_AIM = 2.0
F = TypeVar("F", Phases, Rate, Latencies)


@dataclass(frozen=True)
class Row:
    peer: str
    case: str
    theirs: str
    ours: str
    ratio: float
    """Ours over theirs in throughput terms: above 1, we are faster."""
    latency_multiple: float | None = None
    """Ours over raw in latency terms (raw rows only)."""


def rate(value: float, unit: str) -> str:
    return f"{value:,.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


# ---------------------------------------------------------------- the sections


def alternate(
    theirs: AbstractContextManager[Callable[[int], F]],
    mine: AbstractContextManager[Callable[[int], F]],
    total: int,
    rounds: int,
    our_total: int | None = None,
) -> tuple[F, F]:
    """Both sides set up, then ``total`` units of work each (``our_total`` for ours when it differs),
    in ``rounds`` rounds that alternate the sides (theirs first, then ours first, ...), so that
    background load hits both alike; each side's figures, its rounds added up."""
    totals = {"theirs": total, "ours": total if our_total is None else our_total}
    results: dict[str, list[F]] = {"theirs": [], "ours": []}
    with theirs as their_round, mine as our_round:
        order = [("theirs", their_round), ("ours", our_round)]
        for r in range(rounds):
            for side, one_round in order if r % 2 == 0 else order[::-1]:
                results[side].append(one_round(len(range(r, totals[side], rounds))))
    return reduce(operator.add, results["theirs"]), reduce(operator.add, results["ours"])


SHAPES = ("bare", "worker")
"""Our consumer in the worker loop: the bare loop of ``claim_next`` and ``ack_many``, or run-mailbox's ``Worker``."""


Phase = tuple[str, Callable[[Phases], float]]
BARE_PHASES: list[Phase] = [
    ("end-to-end (enqueue+process)", lambda p: p.end_to_end),
    ("enqueue only (1 producer)", lambda p: p.enqueue_rate),
    ("process only (batch 10)", lambda p: p.process_rate),
]
WORKER_PHASES: list[Phase] = [  # its enqueue phase is the bare loop's: the same submits
    ("end-to-end, the Worker", lambda p: p.end_to_end),
    ("process only, the Worker (x10)", lambda p: p.process_rate),
]


def worker_loop_rows(
    jobs: int, rounds: int, concurrency: list[int], log: Callable[[str], None], shapes: tuple[str, ...] = SHAPES
) -> list[Row]:
    from bench import _peer_pgqueuer as pgq

    rows = []
    for n in concurrency:
        for shape in shapes:
            with_workers = shape == "worker"
            theirs, mine = alternate(pgq.worker_loop(n), ours.worker_loop(n, with_workers=with_workers), jobs, rounds)
            ours_name = "our Worker" if with_workers else "ours"
            for who, p in (("pgqueuer", theirs), (ours_name, mine)):
                log(
                    f"worker loop x{n} {who}: {p.end_to_end:,.0f} jobs/s end-to-end ({p.enqueue_rate:,.0f} enqueue, "
                    f"{p.process_rate:,.0f} process)"
                )
            phases = WORKER_PHASES if with_workers else BARE_PHASES
            for label, figure in phases:
                a, b = figure(theirs), figure(mine)
                rows.append(Row("pgqueuer", f"worker loop x{n}, {label}", rate(a, "jobs/s"), rate(b, "jobs/s"), b / a))
    return rows


def approval_rows(round_trips: int, rounds: int, concurrency: list[int], log: Callable[[str], None]) -> list[Row]:
    from bench import _peer_dbos as dbos

    rows = []
    for n in concurrency:
        theirs, mine = alternate(dbos.approval(n), ours.approval(n), round_trips, rounds)
        log(f"approval x{n}: DBOS {theirs.per_second:,.1f} round trips/s, ours {mine.per_second:,.1f}")
        who = f"{n} thread{'s' if n > 1 else ''}"
        rows.append(
            Row(
                "DBOS",
                f"approval round trip x{n} ({who})",
                rate(theirs.per_second, "trips/s"),
                rate(mine.per_second, "trips/s"),
                mine.per_second / theirs.per_second,
            )
        )
    return rows


def raw_rows(transactions: int, lifecycles: int, rounds: int, log: Callable[[str], None]) -> list[Row]:
    from bench import _peer_raw as raw

    floor, mine = alternate(raw.insert_commit(), ours.command_latency(), transactions, rounds, lifecycles)
    raw_ms, raw_rate = floor.median_ms(raw.OPERATION), floor.rate(raw.OPERATION)
    log(f"raw psycopg: {raw_ms:.2f} ms median, {raw_rate:,.0f} tx/s")
    log("ours: " + ", ".join(f"{name} {mine.median_ms(name):.2f} ms" for name in (*ours.COMMANDS, ours.KNOWN_THREAD)))
    rows = []
    for name in (*ours.COMMANDS, ours.KNOWN_THREAD):
        ms = mine.median_ms(name)
        rows.append(
            Row(
                "raw psycopg",
                f"INSERT+COMMIT vs {name}, median ms",
                f"{raw_ms:.2f} ms",
                f"{ms:.2f} ms",
                raw_ms / ms,
                ms / raw_ms,
            )
        )
    samples = [s for name in ours.COMMANDS for s in mine.samples[name]]
    ours_rate = len(samples) / sum(samples)
    rows.append(
        Row(
            "raw psycopg",
            "tx/s, 1 client (ours: the 4 commands)",
            rate(raw_rate, "tx/s"),
            rate(ours_rate, "tx/s"),
            ours_rate / raw_rate,
            raw_rate / ours_rate,
        )
    )
    return rows


# ---------------------------------------------------------------- report


def table(rows: list[Row], title: str) -> Table:
    t = Table(title=title)
    for name in ("peer", "case", "their figure", "ours", "ratio", f"ours/raw latency (aim <= {LATENCY_AIM:g}x)"):
        t.add_column(name, justify="left" if name in ("peer", "case") else "right", no_wrap=True)
    for r in rows:
        ratio = f"{r.ratio:.2f}x"
        multiple = "" if r.latency_multiple is None else f"{r.latency_multiple:.1f}x"
        if r.latency_multiple is not None and r.latency_multiple > LATENCY_AIM:
            multiple = f"[bold red]{multiple}[/]"
        t.add_row(r.peer, r.case, r.theirs, r.ours, ratio if r.ratio >= 1 else f"[red]{ratio}[/]", multiple)
    return t


def versions() -> str:
    with psycopg.connect(f"{PG_CONNINFO} dbname=postgres") as conn:
        row = conn.execute("SHOW server_version").fetchone()
    packages = ("pgqueuer", "asyncpg", "dbos", "eventsourcing", "psycopg", "pydantic")
    server = row[0] if row else "?"
    return "Postgres " + server + "; " + ", ".join(f"{p} {version(p)}" for p in packages)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, help="jobs per worker-loop case, raw transactions (default 2000)")
    parser.add_argument("--round-trips", type=int, help="approval round trips per case (default jobs / 4)")
    parser.add_argument("--lifecycles", type=int, help="lifecycles timed command by command (default jobs / 10)")
    parser.add_argument("--rounds", type=int, help="rounds each case alternates the two sides in (default 4)")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated consumer counts (default 1,4)")
    parser.add_argument("--peers", default=",".join(SECTIONS), help="comma-separated: pgqueuer,dbos,raw")
    parser.add_argument(
        "--shapes", default=",".join(SHAPES), help="our consumer beside pgqueuer's: bare (loop), worker (the Worker)"
    )
    parser.add_argument("--quick", action="store_true", help="small figures (300 jobs): a smoke run")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (300 if args.quick else 2000)
    args.round_trips = args.round_trips or max(50, args.jobs // 4)
    args.lifecycles = args.lifecycles or max(50, args.jobs // 10)
    args.rounds = args.rounds or (2 if args.quick else 4)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    concurrency = [int(n) for n in args.concurrency.split(",")]
    sections = args.peers.split(",")
    if unknown := set(sections) - set(SECTIONS):
        raise SystemExit(f"unknown peers {sorted(unknown)} (choose from {', '.join(SECTIONS)})")
    ensure_bench_database()
    console = Console(width=max(150, Console().width))
    console.log(versions())
    rows: list[Row] = []
    if "pgqueuer" in sections:
        shapes = tuple(args.shapes.split(","))
        if unknown := set(shapes) - set(SHAPES):
            raise SystemExit(f"unknown shapes {sorted(unknown)} (choose from {', '.join(SHAPES)})")
        rows += worker_loop_rows(args.jobs, args.rounds, concurrency, console.log, shapes)
    if "dbos" in sections:
        rows += approval_rows(args.round_trips, args.rounds, concurrency, console.log)
    if "raw" in sections:
        rows += raw_rows(args.jobs, args.lifecycles, args.rounds, console.log)
    title = (
        f"run-mailbox beside its peers ({args.jobs} jobs per worker-loop case, {args.round_trips} round trips, "
        f"{args.jobs} raw transactions, {args.lifecycles} lifecycles; {args.rounds} alternating rounds each)"
    )
    console.print(table(rows, title))
    console.print(
        "ratio = ours / theirs in throughput terms: above 1x we are faster. Worker loop: the producer phase, then\n"
        "the consumer phase, each timed alone; end-to-end = jobs / (enqueue + process seconds)."
    )


if __name__ == "__main__":
    main()
