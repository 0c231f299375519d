"""Where a submit's time goes on Postgres: the write function taken apart, beside the raw transaction.

    /work/main/.venv/bin/python -m bench.submit_parts [--submits 500] [--transactions 500]

``bench.peers`` holds ``submit`` to a raw psycopg one-row INSERT + COMMIT. A submit is one round trip:
the command's Python, then one statement calling the write function (``<prefix>_write``, migration 7),
committed on return. This installs copies of that function with parts left out, on the service's
fresh schema, and points the recorder's write statement at each in turn, submit by submit (each run on
a thread of its own, so a submit never reads), the cases in a new random order each round, with the
raw transaction and a bare ``SELECT 1`` round trip among them:

- ``as shipped``: the function as migration 7 defines it (checked against the deployed source);
- ``no lock, NOTIFY or lock timeout``: without the table lock, the notification and the timeout;
- ``no presumed-new probe``: without the check that the thread's mailbox has no events yet;
- ``writes nothing``: none of these and no rows (it returns made-up notification ids), so the
  commit has no WAL to flush: what is left is the call, its round trip and the command's Python.

Leaving out only the events, or only the side rows, gave figures that moved with the harness (from
34 us faster to 104 us slower than as shipped, 2026-12-04): they are not among the cases. The cut
variants corrupt the throwaway schema, which is dropped afterwards. For each case it prints the
medians of the wall time and of the process's CPU time (user + system) per call.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier
from rich.console import Console
from rich.table import Table

from bench import _peer_ours as ours
from bench._common import ensure_bench_database
from bench._cpu import client_cpu
from bench._peer_common import pg_url
from bench._peer_raw import jobs_table
from run_mailbox.infrastructure.persistence import pg_write_migrations

FAKE_IDS = "RETURN QUERY SELECT (row_number() OVER ())::bigint FROM unnest(events);"


def _cut(text: str, start: str, end: str) -> str:
    """The part of ``text`` from ``start`` up to (not including) ``end``."""
    first = text.index(start)
    return text[first : text.index(end, first)]


def variants(recorder: Any) -> dict[str, str]:
    """The write function's source as shipped, and with parts left out; each cut must be found."""
    shipped = pg_write_migrations.write_v7(recorder)[0]
    rows = _cut(shipped, "IF side->'idem' IS NOT NULL", "END $$")
    probe = _cut(shipped, "FOR i IN 0 .. jsonb_array_length(side->'new')", "setting := set_config")
    bookkeeping = [
        "setting := set_config('lock_timeout', lock_ms || 'ms', true);",
        f"LOCK TABLE {recorder.table('events')} IN EXCLUSIVE MODE;",
        f"NOTIFY {recorder.channel};",
    ]

    def without(*parts: str, text: str = shipped) -> str:
        for part in parts:
            if part not in text:
                raise RuntimeError(f"the write function no longer has {part[:60]!r}: update bench.submit_parts")
            text = text.replace(part, FAKE_IDS if part == rows else "")
        return text

    return {
        "as shipped": shipped,
        "no lock, NOTIFY or lock timeout": without(*bookkeeping),
        "no presumed-new probe": without(probe),
        "writes nothing": without(*bookkeeping, probe, rows),
    }


def install(service: Any, sources: dict[str, str]) -> dict[str, Any]:
    """Each variant as a function of its own on the service's schema; the write statement calling each."""
    recorder = service.recorder
    schema, prefix = recorder.datastore.schema, recorder.table_prefix
    name = recorder.table("write")
    statements = {}
    with recorder.datastore.get_connection() as conn:
        deployed = conn.execute("SELECT prosrc FROM pg_proc WHERE oid = %s::regproc", [name]).fetchone()
        if deployed is None or deployed["prosrc"] not in sources["as shipped"]:
            raise RuntimeError("the deployed write function is not migration 7's: update bench.submit_parts")
        for i, source in enumerate(sources.values()):
            conn.execute(source.replace(name, recorder.table(f"write_part{i}")))
            statements[i] = SQL(
                "SELECT notification_id FROM {}(%s::integer, %b::{}[], %s::jsonb) AS notification_id"
            ).format(Identifier(schema, f"{prefix}_write_part{i}"), Identifier(schema, recorder.stored_event_type_name))
    return statements


def measure(submits: int, transactions: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per case, the wall and CPU seconds of each call; each round runs every case once, in a random order."""
    samples: dict[str, tuple[list[float], list[float]]] = {}
    with ours.fresh_service(1) as service, jobs_table("parts") as (conn, insert):
        sources = variants(service.recorder)
        statements = install(service, sources)
        numbers = itertools.count()

        def submit_with(statement: Any) -> Callable[[], None]:
            def call() -> None:
                service.recorder.sql.write = statement
                n = next(numbers)
                service.submit(f"t{n}", f"r{n}")

            return call

        def raw() -> None:
            conn.execute(insert, ["job"])
            conn.commit()

        def select_one() -> None:
            conn.execute("SELECT 1").fetchall()
            conn.commit()

        cases = {label: submit_with(statements[i]) for i, label in enumerate(sources)}
        cases["raw INSERT + COMMIT"] = raw
        cases["SELECT 1 + COMMIT (round trips alone)"] = select_one
        for call in cases.values():  # warm up: statements prepared, pages read
            for _ in range(20):
                call()
        samples = {label: ([], []) for label in cases}
        order = list(cases.items())
        shuffle = random.Random(0).shuffle
        for r in range(max(submits, transactions)):
            shuffle(order)  # no case always follows the same one
            for label, call in order:
                if r >= (transactions if label.startswith(("raw", "SELECT")) else submits):
                    continue
                cpu, wall = client_cpu(), time.perf_counter()
                call()
                samples[label][0].append(time.perf_counter() - wall)
                samples[label][1].append(client_cpu() - cpu)
        service.recorder.sql.write = statements[0]
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submits", type=int, default=500, help="submits per variant")
    parser.add_argument("--transactions", type=int, default=500, help="raw transactions")
    args = parser.parse_args()
    ensure_bench_database()
    console = Console()
    with psycopg.connect(pg_url()) as conn:
        console.log(f"Postgres {conn.info.parameter_status('server_version')}")
    samples = measure(args.submits, args.transactions)
    shipped = statistics.median(samples["as shipped"][0])
    raw = statistics.median(samples["raw INSERT + COMMIT"][0])
    table = Table(title=f"submit, its write function taken apart ({args.submits} submits each, shuffled)")
    for column in ("case", "median wall", "median CPU", "vs as shipped", "vs raw"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for label, (walls, cpus) in samples.items():
        wall = statistics.median(walls)
        table.add_row(
            label,
            f"{wall * 1e6:,.0f} us",
            f"{statistics.median(cpus) * 1e6:,.0f} us",
            f"{(wall - shipped) * 1e6:+,.0f} us",
            f"{wall / raw:.2f}x",
        )
    console.print(table)
    console.print(
        "CPU: this process's user + system time (its Python, psycopg, the socket calls); the "
        "rest of the wall time is the server and the network."
    )


if __name__ == "__main__":
    main()
