"""pgqueuer's worker loop: one producer enqueues jobs one by one, then QueueManagers drain them.

Each consumer is a ``QueueManager`` on its own asyncpg connection (pgqueuer's primary driver),
in ``drain`` mode with ``batch_size=10``: it dequeues ten jobs per query (``FOR UPDATE SKIP
LOCKED``), runs each as an asyncio task and acks them in batches through its status-log buffer
(one statement moves up to ten jobs from the queue table to the log). Concurrency ``n`` runs
``n`` QueueManagers side by side in one event loop (uvloop when installed, as ``pgq run`` does),
the way one process would host several workers; the processing time includes their start-up
checks (a few queries). The schema is a fresh one, reached through the connections' ``search_path``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
from pgqueuer import Job, Queries, QueueManager
from pgqueuer.db import AsyncpgDriver
from pgqueuer.domain.types import QueueExecutionMode

from bench._cpu import PhaseClocks, mark
from bench._peer_common import Phases, fresh_schema, pg_url

ENTRYPOINT = "noop"
WARM_UP_JOBS = 10
T = TypeVar("T")


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with pgqueuer on Linux
        return asyncio.run(coro)
    return uvloop.run(coro)


async def noop(job: Job) -> None:
    return None


async def connect(schema: str) -> asyncpg.Connection:
    return await asyncpg.connect(pg_url(), server_settings={"search_path": schema})


async def drain(schema: str, consumers: int, batch_size: int) -> float:
    """Seconds until ``consumers`` QueueManagers have processed and acked every queued job."""
    connections = [await connect(schema) for _ in range(consumers)]
    try:
        managers = []
        for conn in connections:
            qm = QueueManager(Queries(AsyncpgDriver(conn)))
            qm.entrypoint(ENTRYPOINT)(noop)
            managers.append(qm)
        start = time.perf_counter()
        await asyncio.gather(
            *(
                qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain, dequeue_timeout=timedelta(seconds=1))
                for qm in managers
            )
        )
        return time.perf_counter() - start
    finally:
        for conn in connections:
            await conn.close()


async def install(schema: str) -> None:
    conn = await connect(schema)
    try:
        await Queries(AsyncpgDriver(conn)).install()
    finally:
        await conn.close()


async def _round(schema: str, jobs: int, consumers: int, batch_size: int, clocks: PhaseClocks | None) -> Phases:
    producer = await connect(schema)
    try:
        queries = Queries(AsyncpgDriver(producer))
        done_before = await successful(producer)
        for _ in range(WARM_UP_JOBS):  # the producer's statements get prepared, the consumers' pages read
            await queries.enqueue(ENTRYPOINT, None)
        await drain(schema, 1, batch_size)

        mark(clocks, "enqueue")
        start = time.perf_counter()
        for _ in range(jobs):
            await queries.enqueue(ENTRYPOINT, None)  # one job, one statement, one transaction
        enqueue_seconds = time.perf_counter() - start
        mark(clocks, "process")
        process_seconds = await drain(schema, consumers, batch_size)
        mark(clocks, None)

        left = await producer.fetchval("SELECT count(*) FROM pgqueuer")
        done = await successful(producer) - done_before
        if left != 0 or done != jobs + WARM_UP_JOBS:
            raise RuntimeError(f"pgqueuer left {left} jobs queued and logged {done} successful ones")
    finally:
        await producer.close()
    return Phases(jobs, enqueue_seconds, process_seconds)


async def successful(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
    return count


@contextmanager
def worker_loop(
    consumers: int, batch_size: int = 10, *, clocks: PhaseClocks | None = None
) -> Iterator[Callable[[int], Phases]]:
    """pgqueuer installed on a fresh schema; yields ``round(jobs)``: enqueue ``jobs`` no-op jobs,
    then drain them with ``consumers`` QueueManagers (each round on a new event loop). ``clocks``, when
    given, is marked at the start of each phase and at the end."""
    with fresh_schema("pgqueuer") as schema:
        run_loop(install(schema))
        yield lambda jobs: run_loop(_round(schema, jobs, consumers, batch_size, clocks))
