"""Why the raw transaction is a moving yardstick: its round trips slow down as the client works between them.

    /work/main/.venv/bin/python -m bench.commit_gap [--transactions 400] [--lifecycles 200] [--rounds 4]
        [--pauses 0,0.5,1,2]

``bench.peers`` holds each command to a raw psycopg one-row INSERT + COMMIT run back to back. A
command's client does its Python between its round trips, and on this machine a round trip is
slower when the server's backend has sat idle meanwhile. This runs the raw transaction with the
client busy for each of ``--pauses`` milliseconds between transactions (a busy loop, as Python work
is), and beside it, rounds alternating, run-mailbox's commands one lifecycle after another on
Postgres and on the in-memory recorder (their Python alone); it prints the medians of each.
"""

from __future__ import annotations

import argparse
import statistics
import time

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from bench import _peer_ours as ours
from bench._common import ensure_bench_database
from bench._peer_common import Latencies
from bench._peer_raw import jobs_table

WARM_UP = 20


def busy(seconds: float) -> None:
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def one_round(
    conn: psycopg.Connection[tuple[object, ...]], insert: sql.Composed, count: int, pause_ms: float
) -> list[tuple[float, float]]:
    """(insert, commit) seconds of ``count`` transactions, the client busy ``pause_ms`` between them."""
    samples = []
    for i in range(WARM_UP + count):
        busy(pause_ms / 1000)
        start = time.perf_counter()
        conn.execute(insert, [f"job-{i}"])
        inserted = time.perf_counter()
        conn.commit()
        if i >= WARM_UP:
            samples.append((inserted - start, time.perf_counter() - inserted))
    return samples


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transactions", type=int, default=400, help="per pause, over all rounds")
    parser.add_argument("--lifecycles", type=int, default=200, help="of our commands per backend, over all rounds")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pauses", default="0,0.5,1,2", help="client work between transactions, ms")
    args = parser.parse_args(argv)
    pauses = [float(p) for p in args.pauses.split(",")]
    ensure_bench_database()
    samples: dict[float, list[tuple[float, float]]] = {p: [] for p in pauses}
    mine = {"postgres": Latencies({}), "in-memory": Latencies({})}
    with (
        jobs_table("gap") as (conn, insert),
        ours.command_latency() as on_postgres,
        ours.command_latency(ours.in_memory_service) as in_memory,
    ):
        for r in range(args.rounds):
            for pause in pauses if r % 2 == 0 else reversed(pauses):
                samples[pause] += one_round(conn, insert, args.transactions // args.rounds, pause)
            mine["postgres"] += on_postgres(args.lifecycles // args.rounds)
            mine["in-memory"] += in_memory(args.lifecycles // args.rounds)
    table = Table(title="raw psycopg INSERT + COMMIT, the client busy between transactions (median ms)")
    for column in ("client work between", "INSERT", "COMMIT", "transaction", "beside back to back"):
        table.add_column(column, justify="right")
    floor = statistics.median(i + c for i, c in samples[pauses[0]])
    for pause in pauses:
        inserts, commits = zip(*samples[pause], strict=True)
        whole = statistics.median(i + c for i, c in samples[pause])
        table.add_row(
            f"{pause:g} ms",
            f"{statistics.median(inserts) * 1000:.2f}",
            f"{statistics.median(commits) * 1000:.2f}",
            f"{whole * 1000:.2f}",
            f"{whole / floor:.2f}x",
        )
    console = Console(width=120)
    console.print(table)
    commands = Table(title="run-mailbox, one lifecycle after another (median ms)")
    commands.add_column("command")
    for column in ("on Postgres", "in memory (its Python)", "the rest (the store)"):
        commands.add_column(column, justify="right")
    for name in (*ours.COMMANDS, ours.KNOWN_THREAD):
        pg, memory = mine["postgres"].median_ms(name), mine["in-memory"].median_ms(name)
        commands.add_row(name, f"{pg:.2f}", f"{memory:.2f}", f"{pg - memory:.2f}")
    console.print(commands)


if __name__ == "__main__":
    main()
