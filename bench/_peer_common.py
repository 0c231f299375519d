"""What the peer benchmarks share: databases and fresh schemas, and the figures they return.

Each side of a comparison is a context manager that sets its system up on a fresh schema (untimed)
and yields a function running one round of the measurement; the rounds of the two sides alternate,
so that background load on a shared machine hits both alike, and their figures add up.
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from bench._common import PG_CONNINFO, PG_DBNAME

DBOS_DBNAME = "bench_dbos"  # DBOS gets a database of its own (its system database)


def pg_url(dbname: str = PG_DBNAME) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{dbname}"


def ensure_database(dbname: str) -> None:
    with psycopg.connect(f"{PG_CONNINFO} dbname=postgres", autocommit=True, connect_timeout=3) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))


def _admin(statement: str, schema: str, dbname: str) -> None:
    with psycopg.connect(f"{PG_CONNINFO} dbname={dbname}", autocommit=True) as conn:
        conn.execute(sql.SQL(statement).format(sql.Identifier(schema)))


@contextmanager
def fresh_schema(system: str, dbname: str = PG_DBNAME, *, create: bool = True) -> Iterator[str]:
    """A new schema's name (created unless ``create`` is False), dropped with its contents afterwards."""
    schema = f"peers_{system}_{uuid.uuid4().hex[:10]}"
    if create:
        _admin("CREATE SCHEMA {}", schema, dbname)
    try:
        yield schema
    finally:
        _admin("DROP SCHEMA IF EXISTS {} CASCADE", schema, dbname)


# ---------------------------------------------------------------- figures


@dataclass(frozen=True)
class Phases:
    """A producer enqueued ``jobs``, then consumers processed them all (the phases do not overlap)."""

    jobs: int
    enqueue_seconds: float
    process_seconds: float

    def __add__(self, other: Phases) -> Phases:
        return Phases(
            self.jobs + other.jobs,
            self.enqueue_seconds + other.enqueue_seconds,
            self.process_seconds + other.process_seconds,
        )

    @property
    def end_to_end(self) -> float:
        """Jobs per second over both phases."""
        return self.jobs / (self.enqueue_seconds + self.process_seconds)

    @property
    def enqueue_rate(self) -> float:
        return self.jobs / self.enqueue_seconds

    @property
    def process_rate(self) -> float:
        return self.jobs / self.process_seconds


@dataclass(frozen=True)
class Rate:
    """``count`` operations in ``seconds`` of wall-clock time."""

    count: int
    seconds: float

    def __add__(self, other: Rate) -> Rate:
        return Rate(self.count + other.count, self.seconds + other.seconds)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds


@dataclass(frozen=True)
class Latencies:
    """Seconds each call took, by operation."""

    samples: dict[str, list[float]]

    def __add__(self, other: Latencies) -> Latencies:
        names = self.samples.keys() | other.samples.keys()
        return Latencies({n: self.samples.get(n, []) + other.samples.get(n, []) for n in names})

    def median_ms(self, operation: str) -> float:
        return 1000 * statistics.median(self.samples[operation])

    def rate(self, operation: str) -> float:
        """Calls per second, one after another."""
        return len(self.samples[operation]) / sum(self.samples[operation])
