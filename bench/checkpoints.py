"""Checkpoint throughput on a long thread: does a commit get slower as the thread grows?

    /work/venv/bin/python -m bench.checkpoints [--messages 10000] [--backends postgres,memory]
                                               [--commits-per-run 0,10]

Commits ``--messages`` messages to one thread, one message per ``commit_messages`` call,
and prints the commit rate over the first and the last 1,000 commits side by side. The
rate stays flat when no command loads the whole thread. ``--commits-per-run`` chooses how
many commits each run makes before the next run takes over (0: one run commits them all,
so that run's own checkpoint list grows with the thread). Each measurement runs in a child
process on a fresh store (Postgres: a new schema in database ``run_mailbox_bench``, dropped
after), so the peak RSS printed is that measurement's own.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import time
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from bench._common import ensure_bench_database, fresh_store

os.environ.setdefault("EVENTSOURCING_DISABLE_REDEFINITION_CHECK", "y")

WINDOW = 1_000
THREAD = "bench-thread"


@dataclass(frozen=True)
class Row:
    backend: str
    commits_per_run: int
    messages: int
    first_rate: float
    last_rate: float
    total_seconds: float
    last_seq: int
    peak_rss_mb: float

    @property
    def ratio(self) -> float:
        return self.last_rate / self.first_rate


def run_id_for(commit: int, commits_per_run: int) -> str:
    return "run-0" if commits_per_run == 0 else f"run-{commit // commits_per_run}"


def measure(backend: str, messages: int, commits_per_run: int) -> Row:
    """Runs in a child process: one fresh store, ``messages`` one-message commits."""
    from run_mailbox.infrastructure.service import MailboxService

    with fresh_store(backend) as env:
        service = MailboxService(env=env)
        try:
            runs = 1 if commits_per_run == 0 else -(-messages // commits_per_run)
            for k in range(runs):
                service.submit(THREAD, f"run-{k}", dispatch_id=f"d-{k}")
            stamps = [time.perf_counter()]
            last_seq = 0
            for i in range(messages):
                content = [{"type": "text", "text": f"message {i} of the benchmark thread"}]
                message = {"message_id": f"m-{i}", "role": "assistant" if i % 2 else "user", "content": content}
                result = service.commit_messages(THREAD, run_id_for(i, commits_per_run), [message])
                last_seq = result.message_seq_end
                stamps.append(time.perf_counter())
        finally:
            service.close()
    window = min(WINDOW, messages)
    return Row(
        backend=backend,
        commits_per_run=commits_per_run,
        messages=messages,
        first_rate=window / (stamps[window] - stamps[0]),
        last_rate=window / (stamps[-1] - stamps[-1 - window]),
        total_seconds=stamps[-1] - stamps[0],
        last_seq=last_seq,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def measure_in_child(backend: str, messages: int, commits_per_run: int) -> Row:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (backend, messages, commits_per_run))


def table(rows: list[Row]) -> Table:
    t = Table(title="commit_messages: one message per commit, one thread")
    t.add_column("backend")
    for name in ("commits/run", "last seq", "first 1k/s", "last 1k/s", "last/first", "total s", "peak RSS MB"):
        t.add_column(name, justify="right")
    for r in rows:
        t.add_row(
            r.backend,
            "all" if r.commits_per_run == 0 else str(r.commits_per_run),
            f"{r.last_seq:,}",
            f"{r.first_rate:,.0f}",
            f"{r.last_rate:,.0f}",
            f"{r.ratio:.2f}",
            f"{r.total_seconds:.1f}",
            f"{r.peak_rss_mb:,.0f}",
        )
    return t


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000, help="messages (= commits) per thread")
    parser.add_argument("--backends", default="postgres,memory", help="comma-separated: memory,sqlite,postgres")
    parser.add_argument(
        "--commits-per-run", default="0,10", help="commits each run makes; 0 = one run for the whole thread"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    backends = args.backends.split(",")
    if "postgres" in backends:
        ensure_bench_database()
    console = Console(width=max(Console().width, 110))
    rows = []
    for backend in backends:
        for commits_per_run in (int(c) for c in args.commits_per_run.split(",")):
            row = measure_in_child(backend, args.messages, commits_per_run)
            rows.append(row)
            console.log(
                f"{backend}, {'one run' if commits_per_run == 0 else f'{commits_per_run} commits/run'}: "
                f"{row.first_rate:,.0f} -> {row.last_rate:,.0f} commits/s"
            )
    console.print(table(rows))
    console.print(
        f"first/last 1k/s: commits per second over the first and the last {WINDOW:,} commits; "
        "last/first near 1.00 means a commit costs the same on a long thread as on a short one"
    )


if __name__ == "__main__":
    main()
