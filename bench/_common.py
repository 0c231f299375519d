"""Shared helpers for the benchmarks: one fresh store per measurement, and a worker pool."""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import psycopg
from psycopg import sql

PG_DBNAME = "run_mailbox_bench"
PG_CONNINFO = "host=127.0.0.1 port=5432 user=postgres"
BACKENDS = ("memory", "sqlite", "postgres")

T = TypeVar("T")


def ensure_bench_database() -> None:
    with psycopg.connect(f"{PG_CONNINFO} dbname=postgres", autocommit=True, connect_timeout=3) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [PG_DBNAME]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(PG_DBNAME)))


def _pg(statement: str, schema: str) -> None:
    with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}", autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(schema)))


@contextmanager
def fresh_store(backend: str) -> Iterator[dict[str, str]]:
    """The env of an empty store on ``backend``: a new SQLite file or a new Postgres schema."""
    if backend == "memory":
        yield {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    elif backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="mailbox-bench-") as tmp:
            yield {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": os.path.join(tmp, "bench.db")}
    elif backend == "postgres":
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        _pg("CREATE SCHEMA {}", schema)
        try:
            yield {
                "PERSISTENCE_MODULE": "eventsourcing.postgres",
                "POSTGRES_DBNAME": PG_DBNAME,
                "POSTGRES_HOST": "127.0.0.1",
                "POSTGRES_PORT": "5432",
                "POSTGRES_USER": "postgres",
                "POSTGRES_PASSWORD": "",
                "POSTGRES_SCHEMA": schema,
                "POSTGRES_POOL_SIZE": "10",
                "POSTGRES_MAX_OVERFLOW": "10",
            }
        finally:
            _pg("DROP SCHEMA {} CASCADE", schema)
    else:
        raise ValueError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")


def split(items: Sequence[T], workers: int) -> list[list[T]]:
    """``items`` dealt into ``workers`` disjoint shares."""
    return [list(items[w::workers]) for w in range(workers)]


def timed_workers(shares: list[list[T]], work: Callable[[T], object]) -> float:
    """Runs each share on its own thread (inline when there is one, so cProfile sees it);
    returns the wall-clock seconds from the common start to the last finish."""
    if len(shares) == 1:
        start = time.perf_counter()
        for item in shares[0]:
            work(item)
        return time.perf_counter() - start

    errors: list[BaseException] = []
    gate = threading.Barrier(len(shares) + 1)

    def worker(share: list[T]) -> None:
        gate.wait()
        try:
            for item in share:
                work(item)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    gate.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise errors[0]
    return elapsed


class Stopwatch:
    """Wall-clock time and calls spent in chosen methods of live objects (wrapped in place)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def wrap(self, label: str, obj: object, method: str) -> None:
        inner = getattr(obj, method)
        self.seconds[label], self.calls[label] = 0.0, 0

        def timed(*args: object, **kwargs: object) -> object:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.add(label, time.perf_counter() - start)

        setattr(obj, method, timed)

    def add(self, label: str, seconds: float) -> None:
        """Counts one call of ``label`` that took ``seconds`` (for code timed by hand)."""
        with self._lock:
            self.seconds[label] = self.seconds.get(label, 0.0) + seconds
            self.calls[label] = self.calls.get(label, 0) + 1
