"""Rebuild throughput of every view against the ceiling of reading and decoding the log.

    .venv/bin/python -m bench.rebuild [--events 200000] [--checkpoints 50000,200000] [--rounds 3]

Builds a Postgres log of ``--events`` events with the demo's mix (submit, claim, start, ack,
nack and retry, dead letter, lease expiry and reclaim, suspend and decide, interrupt, message
checkpoints): the workload runs on an in-memory service with a manual clock, and its stored
events are copied into a fresh Postgres schema in large batches (the service's own write path
is measured by bench.lifecycle). Then, for each checkpoint size N, a child process takes each
view in turn, ``--rounds`` times: it reads the first N events twice, decoding every one and then
only the kinds the view handles (its two ceilings, measured again before every rebuild because the
machine's speed drifts; the runner decodes only those kinds), and rebuilds the view from them into
scratch tables with the runner a rebuild uses. It prints the median log events/s, the median ratio
to each ceiling and the child's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from bench._common import ensure_bench_database, fresh_store
from run_mailbox.domain.errors import MailboxError
from run_mailbox.domain.model import DomainEvent
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.views.host import REBUILD_PAGE, ViewHost
from run_mailbox.projections.runner import ViewRunner
from run_mailbox.projections.view import ViewStore, handled_kinds

PAGE = REBUILD_PAGE  # the rebuild's page, and the ceilings' (a read of the log in pages of the same size)


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def _one_round(service: MailboxService, clock: _Clock, rng: random.Random, round_no: int) -> None:
    """Submits a few runs and drives every ready dispatch to one seeded fate."""
    for k in range(8):
        thread, run = f"thread-{rng.randrange(400)}", f"run-{round_no}-{k}"
        try:
            service.submit(thread, run, priority=rng.choice((10, 128, 200)), max_attempts=3)
            service.commit_messages(thread, run, [_message(f"{run}-u", "user", "please")])
        except MailboxError:
            continue
    for claimed in service.claim_next(consumer_id="bench", lease_ms=1_000, limit=16):
        token, dispatch_id = claimed.claim_token or "", claimed.dispatch_id
        service.record_start(dispatch_id, claim_token=token)
        fate = rng.random()
        try:
            if fate < 0.06 and not service.get_run(claimed.run_id).decisions:
                _suspend_and_decide(service, claimed.run_id, dispatch_id, token, rng)
            elif fate < 0.20:
                service.nack(dispatch_id, claim_token=token, error="transient", retry_at=clock.now)
            elif fate < 0.25:
                service.dead_letter(dispatch_id, claim_token=token, error="permanent")
            elif fate < 0.30:
                continue  # the worker dies; the lease expires below
            else:
                service.commit_messages(
                    claimed.thread_id, claimed.run_id, [_message(f"{dispatch_id}-a", "assistant", "done")]
                )
                service.ack(dispatch_id, claim_token=token)
        except MailboxError:
            continue
    if rng.random() < 0.05:
        service.interrupt(f"thread-{rng.randrange(400)}")
    clock.now += 2_000
    service.reclaim_expired_leases(limit=100)


def _suspend_and_decide(service: MailboxService, run_id: str, dispatch_id: str, token: str, rng: random.Random) -> None:
    service.suspend(dispatch_id, claim_token=token, tickets=[{"tool_call_id": f"{run_id}-tc", "tool_name": "bash"}])
    approved = rng.random() < 0.7
    resume = {"decision_id": f"{run_id}-d", "action": "resume", "result": {"approved": approved}}
    service.decide(run_id, f"{run_id}-tc", resume)


def _message(message_id: str, role: str, text: str) -> dict[str, Any]:
    return {"message_id": message_id, "role": role, "content": [{"type": "text", "text": text}]}


def build_log(env: dict[str, str], events: int, console: Console) -> int:
    clock = _Clock()
    memory = MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    rng = random.Random(7)
    started, round_no = time.perf_counter(), 0
    while (memory.recorder.max_notification_id() or 0) < events:
        _one_round(memory, clock, rng, round_no)
        round_no += 1
    console.log(f"workload: {memory.recorder.max_notification_id()} events in {time.perf_counter() - started:.1f}s")
    target = MailboxService(env=env)
    started, copied = time.perf_counter(), 0
    while copied < events:
        page = memory.recorder.select_notifications(start=copied, limit=5_000, inclusive_of_start=False)
        if not page:
            break
        target.recorder.insert_events(page[: events - copied])
        copied += len(page[: events - copied])
    console.log(f"copied {copied} events into Postgres in {time.perf_counter() - started:.1f}s")
    target.close()
    memory.close()
    return copied


def measure(env: dict[str, str], upto: int, rounds: int) -> dict[str, Any]:
    """In a child process: each view's rebuild up to ``upto``, ``rounds`` times, each right after reading
    the same events twice, decoding all of them and then only the view's kinds (its ceilings: the
    machine's speed drifts, so each rebuild is compared with the ceilings measured just before it)."""
    service = MailboxService(env=env)
    host = ViewHost(service, batch_size=PAGE)
    ceilings, views, shares = {}, {}, {}
    for name, store in host.stores.items():
        every, kinds, rates = [], [], []
        for _ in range(rounds):
            every.append(_read_and_decode(host, upto))
            kinds.append(_read_and_decode(host, upto, handled_kinds(store.view)))
            rates.append(_rebuild_rate(store, host, upto))
        ceilings[name] = statistics.median(every)
        views[name] = statistics.median(rates)
        shares[name] = [
            statistics.median(r / c for r, c in zip(rates, every, strict=True)),
            statistics.median(r / c for r, c in zip(rates, kinds, strict=True)),
        ]
    host.close()
    service.close()
    return {"events": upto, "ceilings": ceilings, "views": views, "shares": shares, "peak_rss_mb": _peak_rss_mb()}


def _rebuild_rate(store: ViewStore, host: ViewHost, upto: int) -> float:
    """Log positions per second rebuilding the view into scratch tables up to ``upto`` with the runner a
    rebuild uses (pages of PAGE, the next fetched ahead; the view is handed and decodes only its kinds)."""
    scratch = store.begin_rebuild()
    started = time.perf_counter()
    ViewRunner(scratch, host.read_page, PAGE, read_ahead=True).catch_up(until=upto)
    rate = scratch.position() / (time.perf_counter() - started)
    scratch.drop()
    return rate


def _read_and_decode(host: ViewHost, upto: int, kinds: tuple[type[DomainEvent], ...] | None = None) -> float:
    """Events per second reading the log up to ``upto``, one page after another, and decoding every
    event (or only those of ``kinds``: what a view that handles them decodes)."""
    pages, started, after = host.read_page, time.perf_counter(), 0
    while after < upto:
        rows = pages.fetch(after, min(PAGE, upto - after))
        if not rows:
            break
        pages.decode(rows, kinds)
        after = pages.last_position(rows)
    return after / (time.perf_counter() - started)


def _peak_rss_mb() -> float:
    """This process's peak resident set since it exec'd. Not ``getrusage``: on Linux its ``ru_maxrss``
    keeps the peak from before the exec, i.e. the forking parent's size (here, the whole workload)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def _share(result: dict[str, Any], name: str) -> str:
    every, kinds = result["shares"][name]
    return f"{result['views'][name]:,.0f} ({every:.0%} / {kinds:.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--checkpoints", default="50000,200000", help="log sizes to measure at")
    parser.add_argument("--rounds", type=int, default=3, help="ceilings and rebuild per view and size (medians)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        env, upto, rounds = json.loads(args.child)
        print(json.dumps(measure(env, upto, rounds)))
        return
    console = Console(width=max(110, Console().width))
    sizes = [int(s) for s in args.checkpoints.split(",")]
    ensure_bench_database()
    with fresh_store("postgres") as env:
        total = build_log(env, max(args.events, *sizes), console)
        rows = []
        for size in sizes:
            child = [sys.executable, "-m", "bench.rebuild", "--child", json.dumps([env, min(size, total), args.rounds])]
            result = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
            rows.append(result)
            low, high = min(result["ceilings"].values()), max(result["ceilings"].values())
            console.log(f"{size} events: ceiling {low:,.0f}-{high:,.0f}/s, peak RSS {result['peak_rss_mb']:.0f} MB")
    table = Table(
        title=f"rebuild from position 0 on Postgres (log events/s, median of {args.rounds}; median share of the "
        "ceilings just before each: reading and decoding every event / only the kinds the view handles)"
    )
    table.add_column("view")
    for row in rows:
        table.add_column(f"{row['events']:,} events", justify="right")
    table.add_row(
        "read + decode (ceiling, median)", *(f"{statistics.median(r['ceilings'].values()):,.0f}" for r in rows)
    )
    for name in rows[0]["views"]:
        table.add_row(name, *(_share(r, name) for r in rows))
    table.add_row("peak RSS of the rebuild process", *(f"{r['peak_rss_mb']:.0f} MB" for r in rows))
    console.print(table)


if __name__ == "__main__":
    main()
