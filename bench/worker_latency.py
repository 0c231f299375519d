"""Submit -> handler-start latency of an idle worker (run_mailbox.worker) on Postgres.

    .venv/bin/python -m bench.worker_latency [--runs 300] [--handler sync|async] [--poll-only] [--process]

A worker (concurrency 4, its own MailboxService and connection pool) waits on a fresh Postgres
schema; the bench submits one run at a time from another MailboxService and measures, for each,
the time from just before ``submit`` is called to the moment the handler starts, then waits
50-150 ms so the worker is idle again (its ack written) before the next submit. It prints p50, p90,
p99 and max of that latency, and of its parts: the submit's own transaction (until it returns), and
the rest (from the submit's return, i.e. its commit, to the handler's start), itself made of the
wake-up (from the submit's return to the start of the worker's claim: the NOTIFY reaching the
listener), the worker's ``claim_next(start=True)`` transaction, and the hand-off to the handler
(from the claim's return to the handler's first line).

``--poll-only`` turns LISTEN/NOTIFY off (the worker then finds work by its 1 s poll alone), to show
what the wake-up is worth. ``--process`` runs the worker in a child process (``mailbox worker``-like,
via ``Worker.run``), timing with the wall clock shared by both processes, so that the worker and the
submitter do not share a GIL.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import threading
import time
import uuid
from typing import Any

from bench._common import ensure_bench_database, fresh_store
from run_mailbox.domain.commands import ClaimNext
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.worker import Job, Worker

os.environ.setdefault("EVENTSOURCING_DISABLE_REDEFINITION_CHECK", "y")
WARM_UP = 10
AIM_P50_MS = 10.0


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cut = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50": cut[49], "p90": cut[89], "p99": cut[98], "max": ordered[-1]}


def _serve_in_child(env: dict[str, str], handler_kind: str, listen: bool, queue: Any) -> None:
    """The child process: a worker whose handler reports (run id, wall-clock start) on ``queue``."""

    def handle(job: Job) -> None:
        queue.put((job.run_id, time.time()))

    async def ahandle(job: Job) -> None:
        queue.put((job.run_id, time.time()))

    handler = ahandle if handler_kind == "async" else handle
    worker = Worker(MailboxService(env=env), handler, listen=listen, poll_interval_s=1.0)
    threading.Thread(target=lambda: (worker.ready.wait(), queue.put(("ready", 0.0))), daemon=True).start()
    worker.run(handle_signals=True)


def measure(
    env: dict[str, str], runs: int, handler_kind: str, listen: bool, in_process: bool
) -> dict[str, list[float]]:
    started: dict[str, float] = {}
    arrived = threading.Condition()

    def note(run_id: str, at: float) -> None:
        with arrived:
            started[run_id] = at
            arrived.notify_all()

    clock = time.perf_counter if in_process else time.time
    claims: dict[str, tuple[float, float]] = {}
    worker: Worker | None = None
    child: Any = None
    if in_process:

        def handle(job: Job) -> None:
            note(job.run_id, time.perf_counter())

        async def ahandle(job: Job) -> None:
            note(job.run_id, time.perf_counter())

        service = MailboxService(env=env)
        time_claims(service, claims)
        worker = Worker(service, ahandle if handler_kind == "async" else handle, listen=listen, poll_interval_s=1.0)
        worker.start()
    else:
        queue: Any = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=_serve_in_child, args=(env, handler_kind, listen, queue), daemon=True
        )
        child.start()
        assert queue.get(timeout=60)[0] == "ready"

        def pump() -> None:
            while True:
                run_id, at = queue.get()
                note(run_id, at)

        threading.Thread(target=pump, daemon=True).start()

    submitter = MailboxService(env=env)
    totals, submits, afters, wakes, claiming, handoffs = [], [], [], [], [], []
    try:
        for i in range(WARM_UP + runs):
            run_id = f"run-{i}-{uuid.uuid4().hex[:6]}"
            before = clock()
            submitter.submit(f"thread-{i}", run_id)
            after = clock()
            with arrived:
                if not arrived.wait_for(lambda run_id=run_id: run_id in started, timeout=10):
                    raise RuntimeError(f"the handler never started {run_id}")
            if i >= WARM_UP:
                totals.append(started[run_id] - before)
                submits.append(after - before)
                afters.append(started[run_id] - after)
                if run_id in claims:
                    claim_start, claim_end = claims[run_id]
                    wakes.append(claim_start - after)
                    claiming.append(claim_end - claim_start)
                    handoffs.append(started[run_id] - claim_end)
            time.sleep(random.uniform(0.05, 0.15))  # the worker acks and goes idle again
    finally:
        submitter.close()
        if worker is not None:
            worker.stop()
            worker.join()
            worker.service.close()
        if child is not None:
            child.terminate()
            child.join(10)
    series = {
        "submit -> handler start": totals,
        "  submit (its transaction)": submits,
        "  submit returned -> start": afters,
    }
    if in_process:
        series |= {"    wake-up": wakes, "    claim_next(start=True)": claiming, "    hand-off to handler": handoffs}
    return series


def time_claims(service: MailboxService, claims: dict[str, tuple[float, float]]) -> None:
    """Records when each claim_next that claimed a run started and ended (on the worker's service)."""
    execute = service.execute

    def timed(cmd: Any) -> Any:
        start = time.perf_counter()
        result = execute(cmd)
        if isinstance(cmd, ClaimNext):
            end = time.perf_counter()
            for record in result:
                claims[record.run_id] = (start, end)
        return result

    service.execute = timed  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--handler", choices=("sync", "async"), default="sync")
    parser.add_argument("--poll-only", action="store_true", help="no LISTEN/NOTIFY: the 1 s poll alone")
    parser.add_argument("--process", action="store_true", help="run the worker in a child process")
    args = parser.parse_args()
    ensure_bench_database()
    with fresh_store("postgres") as env:
        series = measure(env, args.runs, args.handler, not args.poll_only, not args.process)
    where = "child process" if args.process else "same process"
    wake = "poll only (1 s)" if args.poll_only else "LISTEN/NOTIFY"
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"idle worker on Postgres, {args.handler} handler, {where}, {wake}: {args.runs} runs (ms); load {load}")
    print(f"{'':28} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for name, samples in series.items():
        figures = percentiles([s * 1000 for s in samples])
        print(f"{name:28} " + " ".join(f"{figures[k]:8.2f}" for k in ("p50", "p90", "p99", "max")))
    p50 = percentiles([s * 1000 for s in series["submit -> handler start"]])["p50"]
    verdict = "met" if p50 < AIM_P50_MS else "MISSED"
    print(f"aim: p50 under {AIM_P50_MS:.0f} ms: {verdict}")


if __name__ == "__main__":
    main()
