"""The consumer's side of the worker loop, four ways, on one Postgres service.

    /work/main/.venv/bin/python -m bench.worker_shapes [--jobs 2000] [--rounds 8] [--concurrency 1,4]

``bench.peers`` drains the queue with a bare loop: ``claim_next(limit=10, start=True)``, then one
``ack_many`` for the batch, two transactions per ten runs. This measures, beside it, the shapes a
consumer could take instead:

- **one write**: the acks of a batch sent with the claim of the next, in one transaction. No
  such command exists: a handler registered for this process only runs ``ack_many``'s handler and
  then ``claim_next``'s on one unit of work, to learn what the shape would be worth before anyone
  designs it;
- **acks on a second thread**: the loop hands each batch to a thread of its own that acks it,
  and claims the next batch meanwhile (pgqueuer's consumers ack through a buffer in the
  background too);
- **run-mailbox's Worker** (``run_mailbox.worker``, concurrency 10, a no-op async handler): what a
  host embedding the mailbox runs, with its event loop, heartbeats and batched acks; timed from
  the moment every worker is serving.

Rounds alternate the shapes (``--jobs`` runs queued by one producer, then drained by
``--concurrency`` consumers, batch 10); it prints each shape's median jobs/s in the process phase
and its ratio to the bare loop.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
from collections.abc import Callable
from dataclasses import KW_ONLY
from typing import Any, ClassVar

from rich.console import Console
from rich.table import Table

from bench import _peer_ours as ours
from bench._common import ensure_bench_database, timed_workers
from run_mailbox import AckItem
from run_mailbox.domain import commands as c
from run_mailbox.domain.commands.base import Command, Id, command_model
from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.results import AckManyResult
from run_mailbox.infrastructure.handlers import HANDLERS, claiming, outcomes
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.unit_of_work import UnitOfWork

BATCH = 10
Drain = Callable[[MailboxService, int, int, int], tuple[float, int]]
"""(service, consumers, batch size, runs queued) -> (seconds, runs acked)"""
Outcome = tuple[AckManyResult | None, list[DispatchRecord]]


def _acks(batch: list[DispatchRecord]) -> list[AckItem]:
    return [AckItem(d.dispatch_id, claim_token=d.claim_token or "") for d in batch]


def _count(result: AckManyResult) -> int:
    if result.refused:
        raise RuntimeError(f"acks refused: {result.refused}")
    return len(result.acked)


# ---------------------------------------------------------------- one write


@command_model
class AckThenClaimNext(Command[Outcome]):
    """The experiment's command (not part of the mailbox): acks ``acks``, then claims and starts up
    to ``limit``, in one transaction."""

    name: ClassVar[str] = "ack_then_claim_next"
    result_type: ClassVar[Any] = Outcome

    _: KW_ONLY
    acks: list[AckItem]
    consumer_id: Id
    limit: int = BATCH


def _ack_then_claim_next(cmd: AckThenClaimNext, uow: UnitOfWork) -> Outcome:
    acked = outcomes.ack_many(c.AckMany(acks=cmd.acks), uow) if cmd.acks else None
    claim = c.ClaimNext(consumer_id=cmd.consumer_id, lease_ms=ours.LEASE_MS, limit=cmd.limit, start=True)
    return acked, claiming.claim_next(claim, uow)


def drain_in_one_write(service: MailboxService, consumers: int, batch_size: int, _: int) -> tuple[float, int]:
    acked = [0] * consumers

    def consume(worker: int) -> None:
        acks: list[AckItem] = []
        while True:
            done, batch = service.execute(AckThenClaimNext(acks=acks, consumer_id=f"c{worker}", limit=batch_size))
            if done is not None:
                acked[worker] += _count(done)
            if not batch:
                return
            acks = _acks(batch)

    return timed_workers([[w] for w in range(consumers)], consume), sum(acked)


# ---------------------------------------------------------------- acks on a second thread


def drain_acking_aside(service: MailboxService, consumers: int, batch_size: int, _: int) -> tuple[float, int]:
    acked = [0] * consumers

    def consume(worker: int) -> None:
        batches: queue.Queue[list[DispatchRecord] | None] = queue.Queue(maxsize=1)
        failed: list[BaseException] = []

        def acker() -> None:
            try:
                while (batch := batches.get()) is not None:
                    acked[worker] += _count(service.ack_many(_acks(batch)))
            except BaseException as exc:  # reported by the consumer
                failed.append(exc)

        thread = threading.Thread(target=acker, name=f"acker-{worker}")
        thread.start()
        try:
            while not failed and (
                batch := service.claim_next(
                    consumer_id=f"c{worker}", lease_ms=ours.LEASE_MS, limit=batch_size, start=True
                )
            ):
                batches.put(batch)
        finally:
            batches.put(None)
            thread.join()
        if failed:
            raise failed[0]

    return timed_workers([[w] for w in range(consumers)], consume), sum(acked)


SHAPES: dict[str, Drain] = {
    "bare loop (bench.peers)": lambda service, consumers, batch_size, _: ours.drain(service, consumers, batch_size),
    "one write": drain_in_one_write,
    "acks on a second thread": drain_acking_aside,
    "run-mailbox's Worker": ours.drain_with_workers,
}


def measure(consumers: int, jobs: int, rounds: int) -> dict[str, float]:
    rates: dict[str, list[float]] = {name: [] for name in SHAPES}
    names = list(SHAPES)
    with ours.fresh_service(2 * consumers) as service:  # the acking threads need connections too
        for i in range(ours.WARM_UP):
            service.submit(f"warm-up-{i}", f"warm-up-{i}")
        ours.drain(service, 1, BATCH)
        for r in range(rounds):
            order = names if r % 2 == 0 else names[::-1]
            for k, name in enumerate(order):
                for i in range(jobs):
                    service.submit(f"t{r}-{k}-{i}", f"r{r}-{k}-{i}")
                seconds, acked = SHAPES[name](service, consumers, BATCH, jobs)
                if acked != jobs:
                    raise RuntimeError(f"{name}: the consumers acked {acked} of {jobs} dispatches")
                rates[name].append(jobs / seconds)
    return {name: statistics.median(found) for name, found in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000, help="runs queued and drained per shape and round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, the shapes' order alternating")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated consumer counts")
    args = parser.parse_args()
    ensure_bench_database()
    HANDLERS[AckThenClaimNext] = _ack_then_claim_next
    title = f"process phase, batch {BATCH}: median jobs/s over {args.rounds} rounds (ratio to the bare loop)"
    table = Table(title=title)
    table.add_column("consumers", justify="right")
    for name in SHAPES:
        table.add_column(name, justify="right")
    for consumers in (int(n) for n in args.concurrency.split(",")):
        rates = measure(consumers, args.jobs, args.rounds)
        bare = rates["bare loop (bench.peers)"]
        table.add_row(str(consumers), *(f"{rate:,.0f} ({rate / bare:.2f}x)" for rate in rates.values()))
    Console().print(table)


if __name__ == "__main__":
    main()
