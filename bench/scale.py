"""Flat cost as the work grows: claiming with a big backlog, appending to a big log.

    python -m bench.scale [--backlog 100000] [--small 300] [--log 1000000] [--base-log 10000] [--samples 200]

1. ``claim_next(limit=1)`` median latency with ``--small`` and with ``--backlog`` queued dispatches
   (five per thread, queued with ``submit_many`` by another service instance, so the worker's
   cache never holds what it claims), on Postgres; the aim is within 1.5x.
2. ``submit`` (an append) median latency on a log of ``--base-log`` and of ``--log`` events (the log
   is filled by COPY with events no command reads), on Postgres; the aim is within 1.1x.

Each case runs on a fresh schema; after loading, the tables are ANALYZEd (as autovacuum would) and
the server CHECKPOINTs (so the load's own writes are not flushed during the samples).
The view rebuild rate and memory at 1e4 and 1e6 events: ``python -m bench.rebuild --events 1000000
--checkpoints 10000,1000000``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from bench._common import PG_CONNINFO, PG_DBNAME, ensure_bench_database, fresh_store
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


def claim_latency(queued: int, samples: int, console: Console) -> float:
    """Claims by a worker that did not queue the backlog (a service of its own, as a worker process
    would be): what it claims is never in its cache, whatever the backlog's size."""
    with fresh_store("postgres") as env:
        producer = MailboxService(env=env)
        started = time.perf_counter()
        runs = [Submit(f"t{n // PER_THREAD}", f"r{n}", priority=128 - n % 3) for n in range(queued)]
        for start in range(0, queued, BATCH):
            producer.submit_many(runs[start : start + BATCH])
        producer.close()
        _settle(env)
        console.log(f"backlog of {queued:,} queued dispatches in {time.perf_counter() - started:.1f} s")
        worker = MailboxService(env=env)
        timings = []
        for n in range(WARM_UP + samples):
            t0 = time.perf_counter()
            (claimed,) = worker.claim_next(consumer_id="w", limit=1)
            if n >= WARM_UP:
                timings.append(time.perf_counter() - t0)
            worker.ack(claimed.dispatch_id, claim_token=claimed.claim_token or "")
        worker.close()
        return _median_ms(timings)


def _fill(env: dict[str, str], events: int) -> None:
    """``events`` stored events that no command reads, copied straight into the events table."""
    table = sql.SQL("{}.mailboxservice_events").format(sql.Identifier(env["POSTGRES_SCHEMA"]))
    with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}") as conn, conn.cursor() as cur:
        copy = sql.SQL("COPY {} (originator_id, originator_version, topic, state) FROM STDIN").format(table)
        with cur.copy(copy) as out:
            for n in range(events):
                out.write_row((uuid.uuid4(), 1, "Bench.Filler", b'{"v":1,"n":%d}' % n))


def append_latency(log: int, samples: int, console: Console) -> float:
    with fresh_store("postgres") as env:
        service = MailboxService(env=env)
        started = time.perf_counter()
        _fill(env, log)
        _settle(env)
        console.log(f"log of {log:,} events in {time.perf_counter() - started:.1f} s")
        for n in range(20):  # warm the pool and the plans
            service.submit(f"warm-{n}", f"warm-{n}")
        timings = []
        for n in range(samples):
            t0 = time.perf_counter()
            service.submit(f"t{n}", f"r{n}")
            timings.append(time.perf_counter() - t0)
        service.close()
        return _median_ms(timings)


def _pair(name: str, measure: Callable[[int], float], small: int, big: int, aim: float, table: Table) -> None:
    little, large = measure(small), measure(big)
    ratio = large / little
    table.add_row(name, f"{little:.2f} ms ({small:,})", f"{large:.2f} ms ({big:,})", f"{ratio:.2f}x", f"<= {aim}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--log", type=int, default=1_000_000)
    parser.add_argument("--base-log", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    console = Console(width=max(110, Console().width))
    ensure_bench_database()
    table = Table(title="flat cost on Postgres (median latency; the ratio of the big case to the small one)")
    for column in ("case", "small", "big", "ratio", "aim"):
        table.add_column(column, justify="left" if column == "case" else "right")
    _pair(
        "claim_next(limit=1)", lambda n: claim_latency(n, args.samples, console), args.small, args.backlog, 1.5, table
    )
    _pair("submit (append)", lambda n: append_latency(n, args.samples, console), args.base_log, args.log, 1.1, table)
    console.print(table)


if __name__ == "__main__":
    main()
