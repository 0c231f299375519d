"""Flat cost as the work grows: claiming with a big backlog, appending to a big log.

    python -m bench.scale [--backlog 100000] [--small 300] [--log 1000000] [--base-log 10000] [--churn 50000]
                          [--samples 200] [--cases claim,append,churn]

1. ``claim_next(limit=1)`` median latency with ``--small`` and with ``--backlog`` queued dispatches
   (five per thread, queued with ``submit_many`` by another service instance, so the worker's
   cache never holds what it claims), on Postgres; the aim is within 1.5x.
2. ``submit`` (an append) median latency on a log of ``--base-log`` and of ``--log`` events (the log
   is filled by COPY with events no command reads), on Postgres; the aim is within 1.1x.
3. ``claim_next(limit=1)`` median latency with ``--small`` queued dispatches on a new store and on one
   through which ``--churn`` threads were first submitted, claimed and acked (their head rows
   written and deleted), twice: with the service vacuuming the ready heads (the default) and with
   ``MAILBOX_VACUUM_HEADS_EVERY=0``. Neither store is ANALYZEd nor vacuumed by the benchmark: the
   server's autovacuum is whatever it is (off on the machines of docs/performance.md).

The small and the big store of a case are loaded side by side, each on a fresh schema; then the tables are
ANALYZEd (as autovacuum would) and the server CHECKPOINTs (so the loads' own writes are not flushed during the
samples), and the samples alternate between the two stores, so the machine's background load hits both alike.
The view rebuild rate and memory at 1e4 and 1e6 events: ``python -m bench.rebuild --events 1000000
--checkpoints 10000,1000000``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import statistics
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from bench._common import PG_CONNINFO, PG_DBNAME, ensure_bench_database, fresh_store
from bench._peer_ours import drain
from run_mailbox import MailboxService, Submit

PER_THREAD = 5
BATCH = 500
WARM_UP = 10


def _settle(env: dict[str, str]) -> None:
    """ANALYZE (as autovacuum would) and CHECKPOINT after loading: the timings then measure the backlog's
    or the log's size, not the flushing of the load's own writes (which landed in the big case's samples
    in some runs and not others: claim 1.17x-2.77x in four runs before)."""
    with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}", autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE"))
        conn.execute(sql.SQL("CHECKPOINT"))


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


Sample = Callable[[], float]


def _load_backlog(env: dict[str, str], queued: int, console: Console) -> None:
    """``queued`` dispatches, five per thread, queued with ``submit_many`` by a service of their own."""
    producer = MailboxService(env=env)
    started = time.perf_counter()
    runs = [Submit(f"t{n // PER_THREAD}", f"r{n}", priority=128 - n % 3) for n in range(queued)]
    for start in range(0, queued, BATCH):
        producer.submit_many(runs[start : start + BATCH])
    producer.close()
    console.log(f"backlog of {queued:,} queued dispatches in {time.perf_counter() - started:.1f} s")


def _claims(worker: MailboxService) -> Sample:
    """Seconds of one ``claim_next(limit=1)`` by a worker that did not queue the backlog (a service of its own,
    as a worker process would be: what it claims is never in its cache); the claim is then acked, untimed."""

    def sample() -> float:
        t0 = time.perf_counter()
        (claimed,) = worker.claim_next(consumer_id="w", limit=1)
        seconds = time.perf_counter() - t0
        worker.ack(claimed.dispatch_id, claim_token=claimed.claim_token or "")
        return seconds

    return sample


def _fill(env: dict[str, str], events: int, console: Console) -> None:
    """``events`` stored events that no command reads, copied straight into the events table."""
    started = time.perf_counter()
    table = sql.SQL("{}.mailboxservice_events").format(sql.Identifier(env["POSTGRES_SCHEMA"]))
    with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}") as conn, conn.cursor() as cur:
        copy = sql.SQL("COPY {} (originator_id, originator_version, topic, state) FROM STDIN").format(table)
        with cur.copy(copy) as out:
            for n in range(events):
                out.write_row((uuid.uuid4(), 1, "Bench.Filler", b'{"v":1,"n":%d}' % n))
    console.log(f"log of {events:,} events in {time.perf_counter() - started:.1f} s")


def _appends(service: MailboxService) -> Sample:
    """Seconds of one ``submit`` to a new thread."""
    count = itertools.count()
    for n in range(20):  # warm the pool and the plans
        service.submit(f"warm-{n}", f"warm-{n}")

    def sample() -> float:
        n = next(count)
        t0 = time.perf_counter()
        service.submit(f"t{n}", f"r{n}")
        return time.perf_counter() - t0

    return sample


def _alternating(small: Sample, big: Sample, samples: int) -> tuple[float, float]:
    """Median ms of each, their samples taken in turns (which goes first alternates), after a warm-up."""
    timings: tuple[list[float], list[float]] = ([], [])
    for n in range(WARM_UP + samples):
        for side in (0, 1) if n % 2 == 0 else (1, 0):
            seconds = (small, big)[side]()
            if n >= WARM_UP:
                timings[side].append(seconds)
    return _median_ms(timings[0]), _median_ms(timings[1])


def _pair(name: str, sizes: tuple[int, int], medians: tuple[float, float], aim: float, table: Table) -> None:
    (small, big), (little, large) = sizes, medians
    ratio = large / little
    table.add_row(name, f"{little:.2f} ms ({small:,})", f"{large:.2f} ms ({big:,})", f"{ratio:.2f}x", f"<= {aim}x")


def claim_case(small: int, big: int, samples: int, console: Console, table: Table) -> None:
    with contextlib.ExitStack() as stack:
        envs = [stack.enter_context(fresh_store("postgres")) for _ in (small, big)]
        for env, queued in zip(envs, (small, big), strict=True):
            _load_backlog(env, queued, console)
        _settle(envs[0])
        workers = [MailboxService(env=env) for env in envs]
        for worker in workers:
            stack.callback(worker.close)
        medians = _alternating(_claims(workers[0]), _claims(workers[1]), samples)
    _pair("claim_next(limit=1)", (small, big), medians, 1.5, table)


def append_case(small: int, big: int, samples: int, console: Console, table: Table) -> None:
    with contextlib.ExitStack() as stack:
        envs = [stack.enter_context(fresh_store("postgres")) for _ in (small, big)]
        services = [MailboxService(env=env) for env in envs]  # makes the tables the log is copied into
        for service in services:
            stack.callback(service.close)
        for env, events in zip(envs, (small, big), strict=True):
            _fill(env, events, console)
        _settle(envs[0])
        medians = _alternating(_appends(services[0]), _appends(services[1]), samples)
    _pair("submit (append)", (small, big), medians, 1.1, table)


def _churn(env: dict[str, str], threads: int, console: Console) -> None:
    """``threads`` runs (one per thread) submitted, then claimed and acked a hundred at a time, by a
    service of their own: every head row they had is written and then deleted."""
    service = MailboxService(env=env)
    started = time.perf_counter()
    for start in range(0, threads, BATCH):
        runs = [Submit(f"c{n}", f"c{n}", priority=128 - n % 3) for n in range(start, min(start + BATCH, threads))]
        service.submit_many(runs)
    drain(service, consumers=1, batch_size=100)
    service.close()
    console.log(f"{threads:,} threads churned in {time.perf_counter() - started:.1f} s")


def churn_case(queued: int, churned: int, samples: int, console: Console, table: Table) -> None:
    for vacuum_every, how in (("", "the service vacuums the heads"), ("0", "left to autovacuum")):
        with contextlib.ExitStack() as stack:
            envs = [stack.enter_context(fresh_store("postgres")) for _ in range(2)]
            envs[1]["MAILBOX_VACUUM_HEADS_EVERY"] = vacuum_every
            _churn(envs[1], churned, console)
            for env in envs:
                _load_backlog(env, queued, console)
            workers = [MailboxService(env=env) for env in envs]
            for worker in workers:
                stack.callback(worker.close)
            medians = _alternating(_claims(workers[0]), _claims(workers[1]), samples)
        name = f"claim_next, {queued:,} queued, threads churned before ({how})"
        _pair(name, (0, churned), medians, 1.5, table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--log", type=int, default=1_000_000)
    parser.add_argument("--base-log", type=int, default=10_000)
    parser.add_argument("--churn", type=int, default=50_000, help="threads claimed and acked before case 3")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--cases", default="claim,append,churn", help="comma-separated: claim,append,churn")
    args = parser.parse_args()
    cases = set(args.cases.split(","))
    console = Console(width=max(110, Console().width))
    ensure_bench_database()
    table = Table(title="flat cost on Postgres (median latency; the ratio of the big case to the small one)")
    for column in ("case", "small", "big", "ratio", "aim"):
        table.add_column(column, justify="left" if column == "case" else "right")
    if "claim" in cases:
        claim_case(args.small, args.backlog, args.samples, console, table)
    if "append" in cases:
        append_case(args.base_log, args.log, args.samples, console, table)
    if "churn" in cases:
        churn_case(args.small, args.churn, args.samples, console, table)
    console.print(table)


if __name__ == "__main__":
    main()
