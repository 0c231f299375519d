"""Our side of each comparison, on one MailboxService per case over a fresh Postgres schema.

Every run gets its own thread (a thread runs one dispatch at a time), and every command is one
transaction. A change to how workers drive the mailbox (batch commands, say) belongs here.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from bench._common import timed_workers
from bench._cpu import PhaseClocks, mark
from bench._peer_common import Latencies, Phases, Rate, fresh_schema, pg_url
from run_mailbox import AckItem
from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.permissions import ToolCallResume, ToolTicket
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.worker import Job, Worker

LEASE_MS = 30_000
WARM_UP = 5
TICKETS = [ToolTicket(tool_call_id="c1", tool_name="shell")]
RESUME = ToolCallResume(decision_id="d1", action="resume", result={"approved": True})
COMMANDS = ("submit", "claim", "record_start", "ack")
KNOWN_THREAD = "submit, known thread"
"""A second run submitted to a thread this service has written: its mailbox is cached, so no read."""


@contextmanager
def fresh_service(workers: int) -> Iterator[MailboxService]:
    """A service on a new schema, its connection pool sized for ``workers`` threads."""
    with fresh_schema("ours") as schema:
        service = MailboxService(
            env={
                "MAILBOX_DATABASE_URL": pg_url(),
                "POSTGRES_SCHEMA": schema,
                "POSTGRES_POOL_SIZE": str(max(2, workers + 1)),
            }
        )
        try:
            yield service
        finally:
            service.close()


# ---------------------------------------------------------------- the worker loop


def drain(service: MailboxService, consumers: int, batch_size: int) -> tuple[float, int]:
    """Seconds until ``consumers`` threads have drained the queue, and the dispatches they acked.

    Each loops ``claim_next(limit=batch_size, start=True)`` (claimed and started in one transaction)
    -> the no-op job -> one ``ack_many`` for the batch, and stops when nothing is left to claim (what is
    still claimed is another consumer's to finish): two transactions per batch, as pgqueuer's dequeue
    and its batched acks."""
    acked = [0] * consumers
    lock = threading.Lock()

    def consume(worker: int) -> None:
        while batch := service.claim_next(consumer_id=f"c{worker}", lease_ms=LEASE_MS, limit=batch_size, start=True):
            result = service.ack_many([AckItem(d.dispatch_id, claim_token=d.claim_token or "") for d in batch])
            if result.refused:
                raise RuntimeError(f"acks refused: {result.refused}")
            with lock:
                acked[worker] += len(result.acked)

    seconds = timed_workers([[w] for w in range(consumers)], consume)
    return seconds, sum(acked)


class _CountingHandler:
    """A no-op async handler that sets ``all_ran`` once it has run ``expected`` times."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.ran = 0
        self.all_ran = threading.Event()
        self._lock = threading.Lock()  # each worker's loop runs in a thread of its own

    async def __call__(self, job: Job) -> None:
        with self._lock:
            self.ran += 1
            if self.ran >= self.expected:
                self.all_ran.set()


def drain_with_workers(service: MailboxService, consumers: int, batch_size: int, queued: int) -> tuple[float, int]:
    """Seconds until ``consumers`` of run-mailbox's ``Worker`` (concurrency ``batch_size``, a no-op async
    handler, as a host runs them) have drained the ``queued`` dispatches, timed from the moment all of them
    serve; and the dispatches they acked."""
    # The timing thread sleeps on an event until the last handler has run, then polls briefly for its ack:
    # a thread polling all along would take the GIL from the workers' threads a thousand times a second.
    handler = _CountingHandler(queued)
    workers = [
        Worker(service, handler, concurrency=batch_size, lease_ms=LEASE_MS, poll_interval_s=0.01, listen=False)
        for _ in range(consumers)
    ]
    for worker in workers:
        worker.start()
    start = time.perf_counter()
    try:
        if not handler.all_ran.wait(600):
            raise RuntimeError(f"the workers ran {handler.ran} of {queued} handlers in 10 minutes")
        while sum(w.stats["acked"] for w in workers) < queued:
            if any(w.stopped.is_set() for w in workers):
                raise RuntimeError("a worker stopped before the queue was drained")
            time.sleep(0.0005)
        seconds = time.perf_counter() - start
    finally:
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(30)
    return seconds, sum(w.stats["acked"] for w in workers)


@contextmanager
def worker_loop(
    consumers: int, batch_size: int = 10, *, with_workers: bool = False, clocks: PhaseClocks | None = None
) -> Iterator[Callable[[int], Phases]]:
    """A fresh service; yields ``round(jobs)``: submit ``jobs`` runs (one producer, each run on a
    thread of its own), then drain them with ``consumers`` threads (the bare loop of ``drain``), or
    with as many of run-mailbox's ``Worker`` if ``with_workers``. ``clocks``, when given, is marked at
    the start of each phase and at the end."""
    with fresh_service(consumers) as service:
        for i in range(WARM_UP):
            service.submit(f"warm-up-{i}", f"warm-up-{i}")
        drain(service, 1, batch_size)
        numbers = itertools.count(1)

        def one_round(jobs: int) -> Phases:
            r = next(numbers)
            mark(clocks, "enqueue")
            start = time.perf_counter()
            for i in range(jobs):
                service.submit(f"t{r}-{i}", f"r{r}-{i}")
            enqueue_seconds = time.perf_counter() - start
            mark(clocks, "process")
            if with_workers:
                process_seconds, acked = drain_with_workers(service, consumers, batch_size, jobs)
            else:
                process_seconds, acked = drain(service, consumers, batch_size)
            mark(clocks, None)
            if acked != jobs:
                raise RuntimeError(f"the consumers acked {acked} of {jobs} dispatches")
            return Phases(jobs, enqueue_seconds, process_seconds)

        yield one_round


# ---------------------------------------------------------------- the approval round trip


def claim_and_start(service: MailboxService, thread_id: str, consumer_id: str) -> DispatchRecord:
    claimed = service.claim(thread_id, consumer_id=consumer_id, lease_ms=LEASE_MS, start=True)
    assert claimed is not None and claimed.claim_token is not None
    return claimed


def round_trip(service: MailboxService, thread_id: str, run_id: str, consumer_id: str) -> None:
    """submit -> claim and start -> suspend (one ticket) -> decide -> claim and start the resume ->
    ack: six commands, six transactions."""
    service.submit(thread_id, run_id)
    first = claim_and_start(service, thread_id, consumer_id)
    assert first.claim_token is not None
    service.suspend(first.dispatch_id, claim_token=first.claim_token, tickets=TICKETS)
    outcome = service.decide(run_id, "c1", RESUME)
    resumed = claim_and_start(service, thread_id, consumer_id)
    if resumed.dispatch_id != outcome.resume_dispatch_id or resumed.claim_token is None:
        raise RuntimeError(f"claimed {resumed.dispatch_id}, not the resume dispatch {outcome.resume_dispatch_id}")
    service.ack(resumed.dispatch_id, claim_token=resumed.claim_token)


@contextmanager
def approval(workers: int) -> Iterator[Callable[[int], Rate]]:
    """A fresh service; yields ``round(round_trips)``: that many approval cycles, each worker thread
    running its own runs on threads of their own."""
    with fresh_service(workers) as service:
        for i in range(WARM_UP):
            round_trip(service, f"warm-up-{i}", f"warm-up-{i}", "warm-up")
        numbers = itertools.count(1)

        def one_round(round_trips: int) -> Rate:
            r = next(numbers)
            shares = [[(w, f"{r}-{k}") for k in range(w, round_trips, workers)] for w in range(workers)]
            seconds = timed_workers(
                shares, lambda item: round_trip(service, f"t{item[1]}", f"r{item[1]}", f"w{item[0]}")
            )
            return Rate(round_trips, seconds)

        yield one_round


# ---------------------------------------------------------------- one command at a time


@contextmanager
def in_memory_service() -> Iterator[MailboxService]:
    """A service on the in-memory recorder: the commands' Python, no database."""
    service = MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    try:
        yield service
    finally:
        service.close()


@contextmanager
def command_latency(
    service_context: Callable[[], AbstractContextManager[MailboxService]] = lambda: fresh_service(1),
) -> Iterator[Callable[[int], Latencies]]:
    """A fresh service (on Postgres unless ``service_context`` says otherwise); yields ``round(runs)``:
    the seconds each of submit, claim, record_start and ack took, over ``runs`` lifecycles one after
    another (1 worker), and the seconds a second submit to the same thread took (that run is then
    claimed and acked, untimed)."""
    with service_context() as service:
        for i in range(WARM_UP):
            round_trip(service, f"warm-up-{i}", f"warm-up-{i}", "warm-up")
        numbers = itertools.count(1)

        def one_round(runs: int) -> Latencies:
            r = next(numbers)
            samples: dict[str, list[float]] = {name: [] for name in (*COMMANDS, KNOWN_THREAD)}
            for i in range(runs):
                thread_id, run_id = f"t{r}-{i}", f"r{r}-{i}"
                t0 = time.perf_counter()
                service.submit(thread_id, run_id)
                t1 = time.perf_counter()
                claimed = service.claim(thread_id, consumer_id="w", lease_ms=LEASE_MS)
                t2 = time.perf_counter()
                assert claimed is not None and claimed.claim_token is not None
                service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
                t3 = time.perf_counter()
                service.ack(claimed.dispatch_id, claim_token=claimed.claim_token)
                t4 = time.perf_counter()
                service.submit(thread_id, f"{run_id}-next")
                t5 = time.perf_counter()
                for name, seconds in zip(COMMANDS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                    samples[name].append(seconds)
                samples[KNOWN_THREAD].append(t5 - t4)
                second = service.claim(thread_id, consumer_id="w", lease_ms=LEASE_MS)
                assert second is not None and second.claim_token is not None
                service.ack(second.dispatch_id, claim_token=second.claim_token)
            return Latencies(samples)

        yield one_round
