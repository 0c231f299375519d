"""Claims under steady churn: one producer and one consumer side by side, the claim's latency over time.

    python -m bench.churn [--seconds 40] [--window 10]

A producer submits runs to new threads (pausing 5 ms after every 50, so the consumer keeps up), while a
consumer loops ``claim_next(limit=10, start=True)`` -> ``ack_many``, for ``--seconds``; every ``--window``
seconds the benchmark prints the consumer's acks per second, the median and 90th percentile of its
``claim_next`` latency, and the ready-heads table's live and dead rows as the server counts them
(``pg_stat_user_tables``). It does this twice, each on a fresh Postgres schema: with the service vacuuming
the ready heads (the default) and with ``MAILBOX_VACUUM_HEADS_EVERY=0`` (the heads left to the server's
autovacuum, which is off on the machines of docs/performance.md). A claim's latency that climbs window after
window is the claim reading past dead head rows.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import psycopg
from rich.console import Console
from rich.table import Table

from bench._common import PG_CONNINFO, PG_DBNAME, ensure_bench_database, fresh_store
from run_mailbox import MailboxService
from run_mailbox.domain.commands import AckItem

LEASE_MS = 60_000
PRODUCER_PAUSE_EVERY = 50


def _heads_rows(schema: str) -> tuple[int, int]:
    with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}", autocommit=True) as conn:
        row = conn.execute(
            "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
            [schema, "mailboxservice_ready_heads"],
        ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def run(label: str, vacuum_every: str, seconds: float, window: float, table: Table) -> None:
    with fresh_store("postgres") as env:
        env["MAILBOX_VACUUM_HEADS_EVERY"] = vacuum_every
        service = MailboxService(env=env)
        stop = threading.Event()
        lock = threading.Lock()
        latencies: list[float] = []
        acked = [0]

        def produce() -> None:
            n = 0
            while not stop.is_set():
                service.submit(f"t{n}", f"r{n}")
                n += 1
                if n % PRODUCER_PAUSE_EVERY == 0:
                    time.sleep(0.005)

        def consume() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                batch = service.claim_next(consumer_id="c", lease_ms=LEASE_MS, limit=10, start=True)
                took = time.perf_counter() - started
                if not batch:
                    time.sleep(0.01)
                    continue
                service.ack_many([AckItem(d.dispatch_id, claim_token=d.claim_token or "") for d in batch])
                with lock:
                    latencies.append(took)
                    acked[0] += len(batch)

        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for thread in threads:
            thread.start()
        try:
            start, last_acked = time.perf_counter(), 0
            while (elapsed := time.perf_counter() - start) < seconds:
                time.sleep(window)
                with lock:
                    window_latencies, latencies[:] = sorted(latencies), []
                    done = acked[0]
                live, dead = _heads_rows(env["POSTGRES_SCHEMA"])
                median = statistics.median(window_latencies) * 1000 if window_latencies else 0.0
                p90 = window_latencies[int(len(window_latencies) * 0.9)] * 1000 if window_latencies else 0.0
                table.add_row(
                    label,
                    f"{elapsed + window:.0f} s",
                    f"{(done - last_acked) / window:,.0f}",
                    f"{median:.2f} ms",
                    f"{p90:.2f} ms",
                    f"{live:,} / {dead:,}",
                )
                last_acked = done
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--window", type=float, default=10)
    args = parser.parse_args()
    ensure_bench_database()
    table = Table(title="claim_next under steady churn on Postgres (1 producer, 1 consumer, batches of 10)")
    for column in ("ready heads", "at", "acked/s", "claim median", "claim p90", "heads live / dead"):
        table.add_column(column, justify="left" if column == "ready heads" else "right")
    run("vacuumed by the service", "", args.seconds, args.window, table)
    run("left to autovacuum", "0", args.seconds, args.window, table)
    Console(width=max(110, Console().width)).print(table)


if __name__ == "__main__":
    main()
