"""The views' readers as the log grows: a feed page, the ready dispatches, the run counts.

    .venv/bin/python -m bench.view_reads [--sizes 10000,100000] [--repeat 15]

For each size, builds a Postgres log of that many events with bench.rebuild's workload, catches
every view up, then times (median of ``--repeat``) ``canonical_feed(after=<middle>, limit=100)``,
``ready_dispatches(limit=100)`` and ``run_counts()`` through ``ViewHost``, beside what the feed and
the counts cost when a reader loads the whole table (how they were written before keyset pages
and ``ViewStore.count``), and prints the ratio of the biggest size to the smallest.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from bench._common import ensure_bench_database, fresh_store
from bench.rebuild import build_log
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.views.host import ViewHost
from run_mailbox.projections import canonical_feed, run_status
from run_mailbox.projections.canonical import CanonicalEvent


def _median_ms(call: Callable[[], Any], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def _whole_table_feed(host: ViewHost, after: int, limit: int) -> list[CanonicalEvent]:
    rows = host.store(canonical_feed.TABLE).select(canonical_feed.TABLE, order_by=("position",))
    return [CanonicalEvent.model_validate(r["envelope"]) for r in rows if r["position"] > after][:limit]


def _whole_table_counts(host: ViewHost) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in host.store(run_status.TABLE).select(run_status.TABLE):
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    return counts


def measure(events: int, repeat: int, console: Console) -> dict[str, Any]:
    with fresh_store("postgres") as env:
        built = build_log(env, events, console)
        service = MailboxService(env=env)
        host = ViewHost(service)
        try:
            host.catch_up()
            middle = built // 2
            feed_rows = host.store(canonical_feed.TABLE).count(canonical_feed.TABLE)
            return {
                "events": built,
                "feed rows": feed_rows,
                "feed page": _median_ms(lambda: host.canonical_feed(after=middle, limit=100), repeat),
                "feed page, whole table": _median_ms(lambda: _whole_table_feed(host, middle, 100), max(3, repeat // 5)),
                "ready_dispatches(100)": _median_ms(lambda: host.ready_dispatches(limit=100), repeat),
                "run_counts": _median_ms(host.run_counts, repeat),
                "run_counts, whole table": _median_ms(lambda: _whole_table_counts(host), max(3, repeat // 5)),
            }
        finally:
            host.close()
            service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="log sizes, in events")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    console = Console(width=max(110, Console().width))
    ensure_bench_database()
    results = [measure(int(size), args.repeat, console) for size in args.sizes.split(",")]
    table = Table(title="view readers on Postgres (median ms; last column: biggest log / smallest)")
    table.add_column("reader")
    for r in results:
        table.add_column(f"{r['events']:,} events ({r['feed rows']:,} feed rows)", justify="right")
    table.add_column("ratio", justify="right")
    for case in (
        "feed page",
        "feed page, whole table",
        "ready_dispatches(100)",
        "run_counts",
        "run_counts, whole table",
    ):
        figures = [r[case] for r in results]
        table.add_row(case, *(f"{f:.1f}" for f in figures), f"{figures[-1] / figures[0]:.2f}x")
    console.print(table)


if __name__ == "__main__":
    main()
