"""Lifecycle throughput: submit -> claim -> record_start -> ack, against bare eventsourcing saves.

    /work/venv/bin/python -m bench.lifecycle [--runs 500] [--backends memory,sqlite,postgres] [--workers 1,4]

For each backend, worker count and variant (without / with an idempotency key on every
command) it times ``--runs`` lifecycles on one shared MailboxService, each worker owning its
own threads and runs. Right after, on a fresh store of the same backend, it times a plain
eventsourcing Application saving a trivial aggregate in the same number of transactions
with the same number of events per transaction (counted from the service's log in a
warm-up). ``overhead`` is service time / bare time.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from rich.console import Console
from rich.table import Table

from bench._common import BACKENDS, Stopwatch, ensure_bench_database, fresh_store, timed_workers
from run_mailbox.infrastructure.service import MailboxService

os.environ.setdefault("EVENTSOURCING_DISABLE_REDEFINITION_CHECK", "y")

COMMANDS = ("submit", "claim", "record_start", "ack")
VARIANTS = ("plain", "idem")
WARM_UP_RUNS = 5
ROUNDS = 10  # service and baseline alternate, a tenth of the runs at a time
AIM = 1.3

Item = tuple[str, str, bool]  # (thread_id, run_id, the run opens its thread)
Sizes = dict[bool, tuple[int, ...]]  # events per command, for runs that open their thread and runs that do not


# ---------------------------------------------------------------- the service side


def lifecycle_steps(service: MailboxService, thread_id: str, run_id: str, idem: bool) -> Iterator[str]:
    """Runs one lifecycle, yielding each command's name after it committed."""

    def key(command: str) -> str | None:
        return f"{run_id}:{command}" if idem else None

    service.submit(thread_id, run_id, idempotency_key=key("submit"))
    yield "submit"
    claimed = service.claim(thread_id, consumer_id="bench", idempotency_key=key("claim"))
    assert claimed is not None and claimed.claim_token is not None
    yield "claim"
    token = claimed.claim_token
    service.record_start(claimed.dispatch_id, claim_token=token, idempotency_key=key("record_start"))
    yield "record_start"
    service.ack(claimed.dispatch_id, claim_token=token, idempotency_key=key("ack"))
    yield "ack"


def log_length(app: Application[UUID]) -> int:
    return app.recorder.max_notification_id() or 0


def events_per_command(service: MailboxService, idem: bool) -> Sizes:
    """Notifications each command wrote, read from the log during warm-up lifecycles on one
    thread: the first run opens the thread's mailbox, the others find it open."""
    seen: dict[bool, set[tuple[int, ...]]] = {True: set(), False: set()}
    for i in range(WARM_UP_RUNS):
        counts, before = [], log_length(service)
        for _ in lifecycle_steps(service, "warm-up", f"warm-up-{i}", idem):
            after = log_length(service)
            counts.append(after - before)
            before = after
        seen[i == 0].add(tuple(counts))
    if any(len(counts) != 1 for counts in seen.values()):
        raise RuntimeError(f"commands wrote varying numbers of events during warm-up: {seen}")
    return {opens: counts.pop() for opens, counts in seen.items()}


def shares(runs: int, workers: int, runs_per_thread: int) -> list[list[Item]]:
    """Each worker's own runs, ``runs_per_thread`` to a thread; no thread is shared between workers."""
    per_worker = [len(range(w, runs, workers)) for w in range(workers)]
    return [
        [(f"w{w}-t{k // runs_per_thread}", f"w{w}-r{k}", k % runs_per_thread == 0) for k in range(n)]
        for w, n in enumerate(per_worker)
    ]


# ---------------------------------------------------------------- the bare baseline


class Counter(Aggregate):
    @event("Bumped")
    def bump(self) -> None:
        pass


class BareApplication(Application[UUID]):
    pass


def bare_lifecycle(app: BareApplication, sizes: tuple[int, ...]) -> None:
    """One save per command, each with as many events as the service's command wrote."""
    counter = Counter()  # the creation event counts as the first one
    for _ in range(sizes[0] - 1):
        counter.bump()
    app.save(counter)
    for size in sizes[1:]:
        for _ in range(size):
            counter.bump()
        app.save(counter)


# ---------------------------------------------------------------- one row


@dataclass(frozen=True)
class Row:
    backend: str
    workers: int
    variant: str
    runs: int
    seconds: float
    transactions: int
    events: int
    sizes: Sizes
    bare_seconds: float
    breakdown: Stopwatch | None

    @property
    def overhead(self) -> float:
        return self.seconds / self.bare_seconds


def rounds(work: list[list[Item]], count: int) -> list[list[list[Item]]]:
    """The workers' shares cut into ``count`` consecutive rounds."""
    return [[share[r * len(share) // count : (r + 1) * len(share) // count] for share in work] for r in range(count)]


def instrument(service: MailboxService) -> Stopwatch:
    watch = Stopwatch()
    watch.wrap("aggregate reads", service.repository, "get")
    if service.snapshots is not None:
        watch.wrap("snapshot lookups", service.snapshots, "get")
    watch.wrap("idempotency lookups", service.tables, "find_idempotency")
    watch.wrap("event writes", service.events, "put")
    return watch


def measure(
    backend: str,
    workers: int,
    variant: str,
    runs: int,
    *,
    runs_per_thread: int = 1,
    breakdown: bool = False,
    service_env: dict[str, str] | None = None,
) -> Row:
    """Service and bare baseline, alternated in rounds so that background load hits both alike."""
    idem = variant == "idem"
    with fresh_store(backend) as env, fresh_store(backend) as bare_env:
        service, bare = MailboxService(env={**env, **(service_env or {})}), BareApplication(env=bare_env)
        try:
            sizes = events_per_command(service, idem)
            for _ in range(WARM_UP_RUNS):
                bare_lifecycle(bare, sizes[False])
            watch = instrument(service) if breakdown else None

            def one(item: Item) -> None:
                start = time.perf_counter()
                for _ in lifecycle_steps(service, item[0], item[1], idem):
                    pass
                if watch is not None:
                    watch.add("lifecycle", time.perf_counter() - start)

            log0, tx0, bare_log0 = log_length(service), service.transactions, log_length(bare)
            seconds = bare_seconds = 0.0
            for work in rounds(shares(runs, workers, runs_per_thread), ROUNDS):
                seconds += timed_workers(work, one)
                bare_seconds += timed_workers(work, lambda item: bare_lifecycle(bare, sizes[item[2]]))
            events, transactions = log_length(service) - log0, service.transactions - tx0
            if log_length(bare) - bare_log0 != events:
                raise RuntimeError(f"the baseline wrote {log_length(bare) - bare_log0} events, the service {events}")
        finally:
            service.close()
            bare.close()
    return Row(backend, workers, variant, runs, seconds, transactions, events, sizes, bare_seconds, watch)


# ---------------------------------------------------------------- report


def label(variant: str) -> str:
    return "idem key" if variant == "idem" else "plain"


def table(rows: list[Row]) -> Table:
    t = Table(title="submit -> claim -> record_start -> ack, per run (one row = one fresh store)")
    columns = ("backend", "workers", "variant", "runs/s", "ms/run", "tx/run", "events/run", "events/cmd *")
    for name in (*columns, "bare runs/s", "overhead"):
        t.add_column(name, justify="left" if name in ("backend", "variant") else "right")
    for r in rows:
        over = f"{r.overhead:.2f}x"
        t.add_row(
            r.backend,
            str(r.workers),
            label(r.variant),
            f"{r.runs / r.seconds:,.0f}",
            f"{1000 * r.seconds / r.runs:.2f}",
            f"{r.transactions / r.runs:.2f}",
            f"{r.events / r.runs:.2f}",
            "; ".join("/".join(map(str, r.sizes[opens])) for opens in (True, False)),
            f"{r.runs / r.bare_seconds:,.0f}",
            over if r.overhead <= AIM else f"[bold red]{over}[/]",
        )
    return t


def breakdown_table(rows: list[Row]) -> Table:
    t = Table(title="where a lifecycle's time goes: ms per run, summed over worker threads (calls per run)")
    parts = ("aggregate reads", "snapshot lookups", "idempotency lookups", "event writes")
    for name in ("backend", "workers", "variant", "lifecycle", *parts, "rest"):
        t.add_column(name, justify="left" if name in ("backend", "variant") else "right")
    for r in rows:
        w = r.breakdown
        if w is None:
            continue

        def ms(part: str, watch: Stopwatch = w, runs: int = r.runs) -> str:
            if part not in watch.seconds:
                return "-"
            return f"{1000 * watch.seconds[part] / runs:.2f} ({watch.calls[part] / runs:.0f})"

        # snapshot lookups happen inside aggregate reads; "rest" is CPU: checks, domain, pydantic, digests
        rest = w.seconds["lifecycle"] - sum(w.seconds[p] for p in parts if p != "snapshot lookups")
        t.add_row(
            r.backend,
            str(r.workers),
            label(r.variant),
            f"{1000 * w.seconds['lifecycle'] / r.runs:.2f}",
            *(ms(p) for p in parts),
            f"{1000 * rest / r.runs:.2f}",
        )
    return t


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500, help="lifecycles per measurement (default 500)")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated: memory,sqlite,postgres")
    parser.add_argument("--workers", default="1,4", help="comma-separated worker-thread counts (default 1,4)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="plain,idem (idem: key on every command)")
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra setting for the service only, e.g. AGGREGATE_CACHE_MAXSIZE=1000 (repeatable)",
    )
    parser.add_argument("--breakdown", action="store_true", help="also time reads, writes and lookups")
    parser.add_argument("--runs-per-thread", type=int, default=1, help="runs sharing one mailbox thread (default 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    backends = args.backends.split(",")
    if "postgres" in backends:
        ensure_bench_database()
    options = {
        "runs_per_thread": args.runs_per_thread,
        "breakdown": args.breakdown,
        "service_env": dict(item.split("=", 1) for item in args.service_env),
    }
    console = Console(width=max(140, Console().width))
    rows = []
    for backend in backends:
        for workers in (int(w) for w in args.workers.split(",")):
            for variant in args.variants.split(","):
                rows.append(measure(backend, workers, variant, args.runs, **options))
                r = rows[-1]
                console.log(f"{backend} x{workers} {variant}: {r.runs / r.seconds:,.0f} runs/s, {r.overhead:.2f}x")
    console.print(table(rows))
    if args.breakdown:
        console.print(breakdown_table(rows))
    console.print(
        "* events per command (submit/claim/record_start/ack) for a run on a new thread; on a thread already open\n"
        f"overhead = service time / bare eventsourcing time for the same transactions and events; aim <= {AIM}x"
    )


if __name__ == "__main__":
    main()
