"""The floor: one client, one-row INSERT then COMMIT, over and over, with plain psycopg."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from bench._common import PG_CONNINFO, PG_DBNAME
from bench._peer_common import Latencies, fresh_schema

OPERATION = "insert+commit"
WARM_UP = 20


@contextmanager
def jobs_table(system: str = "raw") -> Iterator[tuple[psycopg.Connection[tuple[object, ...]], sql.Composed]]:
    """A one-table schema and one connection (not in autocommit); yields the connection and the
    statement inserting one row (its parameter: the row's text)."""
    with fresh_schema(system) as schema, psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}") as conn:
        table = sql.Identifier(schema, "jobs")
        conn.execute(sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, body text NOT NULL)").format(table))
        conn.commit()
        yield conn, sql.SQL("INSERT INTO {} (body) VALUES (%s)").format(table)


@contextmanager
def insert_commit() -> Iterator[Callable[[int], Latencies]]:
    """A one-table schema and one connection; yields ``round(count)``: the seconds each of ``count``
    single-row insert transactions took."""
    with jobs_table() as (conn, insert):

        def one_round(count: int) -> Latencies:
            samples = []
            for i in range(WARM_UP + count):
                start = time.perf_counter()
                conn.execute(insert, [f"job-{i}"])
                conn.commit()
                if i >= WARM_UP:
                    samples.append(time.perf_counter() - start)
            return Latencies({OPERATION: samples})

        yield one_round
