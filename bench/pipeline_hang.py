"""At what size does a write hang in psycopg's pipeline mode? (docs/decisions/0011-postgres-write-path.md)

    .venv/bin/python -m bench.pipeline_hang [--sizes 1,2,4,6,8,12] [--tries 3] [--wait 10]

For each size (MB of message text) it tries, ``--tries`` times each:

- ``psycopg``: plain psycopg, ``LOCK TABLE`` then an INSERT of one text parameter of that size,
  in a pipeline and a transaction (what eventsourcing 9.5.6 does);
- ``library``: ``commit_messages`` of one message of that size through the library's insert path
  (the mailbox recorder with the library's ``insert_events``);
- ``mailbox``: the same through the mailbox recorder's own write path.

A try that has not returned after ``--wait`` seconds counts as hung; its backends (one holds the
lock, waiting in ClientRead for the rest of the message) are terminated until the call gives up. Results vary with the
machine's socket buffers and load: the hang happens when libpq has not flushed the whole message
when psycopg stops writing and waits to read.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import get_topic
from psycopg import sql

from bench._common import PG_CONNINFO, PG_DBNAME, ensure_bench_database
from run_mailbox.infrastructure.persistence.postgres import PostgresMailboxRecorder
from run_mailbox.infrastructure.service import MailboxService

MB = 1024 * 1024
URL = f"postgresql://postgres@127.0.0.1:5432/{PG_DBNAME}"


class LibraryPathRecorder(PostgresMailboxRecorder):
    """The mailbox recorder with eventsourcing 9.5.6's pipelined insert path."""

    insert_events = PostgresApplicationRecorder.insert_events  # type: ignore[assignment]


def _admin(statement: sql.Composable | str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}", autocommit=True) as conn:
        cur = conn.execute(statement, list(params) or None)
        return cur.fetchall() if cur.description else []


def _try(call: Callable[[], object], app_name: str, wait: float) -> str:
    done: list[str] = []
    thread = threading.Thread(target=lambda: done.append(_outcome(call)), daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(wait)
    if not done:
        # The library retries a write whose connection was terminated (and the retry hangs again).
        while thread.is_alive():
            _admin(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s AND "
                "pid <> pg_backend_pid()",
                app_name,
            )
            thread.join(1)
        return "HUNG"
    return f"{done[0]} {time.monotonic() - started:.1f}s"


def _outcome(call: Callable[[], object]) -> str:
    try:
        call()
    except Exception as exc:  # reported, not raised
        return f"{type(exc).__name__}"
    return "ok"


def plain_psycopg(megabytes: float, app_name: str) -> Callable[[], object]:
    def call() -> None:
        with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME} application_name={app_name}") as conn:
            conn.autocommit = True
            conn.execute("CREATE TABLE IF NOT EXISTS public.pipeline_hang (t text)")
            with conn.pipeline() as pipeline, conn.transaction(), conn.cursor() as cur:
                cur.execute("LOCK TABLE public.pipeline_hang IN EXCLUSIVE MODE")
                cur.execute("INSERT INTO public.pipeline_hang VALUES (%s)", ["x" * int(megabytes * MB)])
                pipeline.sync()
            conn.execute("TRUNCATE public.pipeline_hang")

    return call


def service_commit(megabytes: float, app_name: str, recorder: type) -> tuple[Callable[[], object], Callable[[], None]]:
    schema = f"hang_{uuid.uuid4().hex[:10]}"
    _admin(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    os.environ["PGAPPNAME"] = app_name
    app = MailboxService(
        env={"MAILBOX_DATABASE_URL": URL, "POSTGRES_SCHEMA": schema, "APPLICATION_RECORDER_TOPIC": get_topic(recorder)}
    )
    app.submit("t", "r", dispatch_id="d")
    message = {"message_id": "m", "role": "user", "content": [{"type": "text", "text": "x" * int(megabytes * MB)}]}

    def cleanup() -> None:
        app.close()
        _admin(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))

    return (lambda: app.commit_messages("t", "r", [message])), cleanup


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,2,4,6,8,12")
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--wait", type=float, default=10.0)
    args = parser.parse_args()
    ensure_bench_database()
    for size in [float(s) for s in args.sizes.split(",")]:
        for kind in ("psycopg", "library", "mailbox"):
            outcomes = []
            for _ in range(args.tries):
                app_name = f"hang-{uuid.uuid4().hex[:8]}"
                if kind == "psycopg":
                    outcomes.append(_try(plain_psycopg(size, app_name), app_name, args.wait))
                    continue
                recorder = LibraryPathRecorder if kind == "library" else PostgresMailboxRecorder
                call, cleanup = service_commit(size, app_name, recorder)
                outcomes.append(_try(call, app_name, args.wait))
                cleanup()
            print(f"{size:5.1f} MB  {kind:8s} " + ", ".join(outcomes), flush=True)


if __name__ == "__main__":
    main()
