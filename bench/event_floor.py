"""The floor an event log puts under a worker loop, beside pgqueuer in the same run.

    /work/main/.venv/bin/python -m bench.event_floor [--jobs 4000] [--rounds 4]

What would it take for run-mailbox's worker loop to match pgqueuer's? This measures the cost of
the events alone: no Python domain model, no side rows, no reads. A table shaped like the
library's events table (uuid + version key, a unique notification id from a sequence, 320-byte
states) takes the worker loop's events with plain psycopg, each transaction one statement (a
function that takes the table's ``EXCLUSIVE`` lock and inserts them, as run-mailbox's write does):

- enqueue: one transaction per job, inserting the events a submit writes;
- process: per batch of ten jobs, one transaction with the events of claiming and starting them,
  one with the events of acking them (``claim_next(limit=10, start=True)`` then ``ack_many``).

It does so for three shapes: the events run-mailbox writes today (3 per submit to a new thread,
4 per claim and start, 3 per ack: run, dispatch and thread mailbox each record their step), the
same events with states of 150 bytes (what the write would cost if the states were smaller: a
Dispatch event carries the whole dispatch record, about 500 bytes), and one event per transition
(1, 1, 1). pgqueuer 1.6.0's worker loop (one producer, one consumer, batch 10)
runs in the same run, its rounds alternating with the shapes', as in ``bench.peers``; and so does
the other floor, run-mailbox's own worker loop on the in-memory recorder (its Python, no database),
and the whole of it on Postgres.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from bench import _peer_ours as ours
from bench import _peer_pgqueuer as pgq
from bench._common import PG_CONNINFO, PG_DBNAME, ensure_bench_database
from bench._peer_common import Phases, fresh_schema

BATCH = 10
PYTHON = "Python only: run-mailbox on the in-memory recorder"
OURS = "run-mailbox on Postgres (as in bench.peers)"
STATE_BYTES = 320  # the mean of a worker-loop job's JSON states (Dispatch events ~500, the others 120-300)
TOPIC = "run_mailbox.domain.dispatch:Dispatch.DispatchClaimed"


@dataclass(frozen=True)
class Shape:
    name: str
    submit: int  # events per job, per phase
    claim_and_start: int
    ack: int
    state_bytes: int = STATE_BYTES

    @property
    def state(self) -> bytes:
        return os.urandom(self.state_bytes // 2).hex().encode()


SHAPES = (
    Shape("the events run-mailbox writes (3 / 4 + 3)", 3, 4, 3),
    Shape("the same events, states of 150 bytes", 3, 4, 3, 150),
    Shape("one event per transition (1 / 1 + 1)", 1, 1, 1),
)


@contextmanager
def event_log(shape: Shape) -> Iterator[Callable[[int], Phases]]:
    """A fresh events table; yields ``round(jobs)``: the two phases' seconds for ``jobs`` jobs."""
    with fresh_schema("floor") as schema, psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}", autocommit=True) as conn:
        table, write_fn = sql.Identifier(schema, "events"), sql.Identifier(schema, "write")
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (originator_id uuid NOT NULL, originator_version bigint NOT NULL, topic text, "
                "state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            ).format(table)
        )
        conn.execute(sql.SQL("CREATE UNIQUE INDEX ON {} (notification_id)").format(table))
        # One statement per transaction, as run-mailbox's own write: lock, insert, return the ids.
        conn.execute(
            sql.SQL(
                "CREATE FUNCTION {fn}(ids uuid[], versions bigint[], topics text[], states bytea[]) "
                "RETURNS SETOF bigint LANGUAGE plpgsql AS $$ BEGIN "
                "LOCK TABLE {t} IN EXCLUSIVE MODE; "
                "RETURN QUERY INSERT INTO {t} (originator_id, originator_version, topic, state) "
                "SELECT * FROM unnest(ids, versions, topics, states) RETURNING notification_id; END $$"
            ).format(fn=write_fn, t=table)
        )
        call = sql.SQL("SELECT * FROM {}(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[])").format(write_fn)
        statement = call.as_string(conn)

        state = shape.state

        def write(events: int) -> None:
            ids = [uuid.uuid4() for _ in range(events)]
            conn.execute(statement, [ids, [1] * events, [TOPIC] * events, [state] * events], prepare=True).fetchall()

        def one_round(jobs: int) -> Phases:
            start = time.perf_counter()
            for _ in range(jobs):
                write(shape.submit)
            enqueued = time.perf_counter()
            for first in range(0, jobs, BATCH):
                batch = min(BATCH, jobs - first)
                write(batch * shape.claim_and_start)
                write(batch * shape.ack)
            return Phases(jobs, enqueued - start, time.perf_counter() - enqueued)

        yield one_round


@contextmanager
def in_memory() -> Iterator[Callable[[int], Phases]]:
    """run-mailbox's own worker loop (as ``bench.peers`` drives it) on the in-memory recorder: the
    Python alone (domain model, handlers, events and their JSON), no database."""
    rounds = itertools.count(1)
    with ours.in_memory_service() as service:

        def one_round(jobs: int) -> Phases:
            r = next(rounds)
            start = time.perf_counter()
            for i in range(jobs):
                service.submit(f"t{r}-{i}", f"r{r}-{i}")
            enqueued = time.perf_counter()
            _, acked = ours.drain(service, 1, BATCH)
            if acked != jobs:
                raise RuntimeError(f"acked {acked} of {jobs}")
            return Phases(jobs, enqueued - start, time.perf_counter() - enqueued)

        yield one_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4000, help="jobs per side, over all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    console = Console(width=max(120, Console().width))
    ensure_bench_database()
    per_round = args.jobs // args.rounds
    figures: dict[str, list[Phases]] = {"pgqueuer": [], OURS: [], **{s.name: [] for s in SHAPES}, PYTHON: []}
    with (
        pgq.worker_loop(1, BATCH) as theirs,
        event_log(SHAPES[0]) as today,
        event_log(SHAPES[1]) as smaller,
        event_log(SHAPES[2]) as minimal,
        in_memory() as python_alone,
        ours.worker_loop(1, BATCH) as whole,
    ):
        sides = [
            ("pgqueuer", theirs),
            (OURS, whole),
            (SHAPES[0].name, today),
            (SHAPES[1].name, smaller),
            (SHAPES[2].name, minimal),
            (PYTHON, python_alone),
        ]
        for r in range(args.rounds):
            for name, one_round in sides if r % 2 == 0 else sides[::-1]:
                figures[name].append(one_round(per_round))
            console.log(f"round {r + 1} of {args.rounds}")
    totals = {name: sum(rounds[1:], rounds[0]) for name, rounds in figures.items()}
    peer = totals["pgqueuer"]
    table = Table(title=f"worker loop, 1 consumer, batch {BATCH}: jobs/s (ratio to pgqueuer, above 1x faster)")
    for column in ("", "enqueue", "process", "end to end"):
        table.add_column(column, justify="right" if column else "left")
    for name, p in totals.items():
        cells = [
            (p.enqueue_rate, peer.enqueue_rate),
            (p.process_rate, peer.process_rate),
            (p.end_to_end, peer.end_to_end),
        ]
        label = {"pgqueuer": "pgqueuer 1.6.0 (the real worker loop)", PYTHON: PYTHON, OURS: OURS}.get(
            name, f"events only: {name}"
        )
        table.add_row(label, *(f"{ours:,.0f} ({ours / theirs:.2f}x)" for ours, theirs in cells))
    console.print(table)
    python, events = totals[PYTHON], totals[SHAPES[0].name]
    serial = 1 / (1 / python.end_to_end + 1 / events.end_to_end)
    console.print(
        f"One consumer does the Python and then waits for the write: the two floors added up give "
        f"{serial:,.0f} jobs/s end to end ({serial / peer.end_to_end:.2f}x pgqueuer), before any side row or read."
    )


if __name__ == "__main__":
    main()
