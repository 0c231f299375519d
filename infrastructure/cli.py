"""The ``mailbox`` command line: run the demo, export the canonical event log, read the queue.

Where the log lives: ``--db PATH`` (a SQLite file), ``--postgres`` (``MAILBOX_DATABASE_URL``,
else ``POSTGRES_*``, else ``postgresql://postgres@127.0.0.1:5432/run_mailbox``, created if
missing), else ``PERSISTENCE_MODULE``/``MAILBOX_DATABASE_URL`` from the environment, else
the SQLite file ``~/.local/share/run-mailbox/mailbox.db``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from eventsourcing.persistence import PersistenceError
from psycopg import sql
from rich import box
from rich.console import Console
from rich.table import Table

from domain.errors import MailboxError
from infrastructure.service import MailboxService
from infrastructure.settings import (
    DEFAULT_SQLITE_PATH,
    POSTGRES,
    SettingsError,
    describe,
    env_from_database_url,
    resolve_env,
    sqlite_env,
)
from projections.canonical import CanonicalEvent

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/run_mailbox"
EXPORT_PAGE = 1000
USAGE_ERROR = 2

app = typer.Typer(
    name="mailbox",
    help="A durable, event-sourced mailbox for AI-agent runs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DbOption = Annotated[Path | None, typer.Option("--db", help="SQLite file of the event log.", dir_okay=False)]
PostgresOption = Annotated[
    bool, typer.Option("--postgres", help="Use Postgres (MAILBOX_DATABASE_URL, POSTGRES_* or a local default).")
]


class CliError(Exception):
    """A refusal of the command line itself (for example, an unknown thread)."""


@dataclass
class Store:
    db: Path | None = None
    postgres: bool = False


# ---------------------------------------------------------------------- where the log lives


def postgres_env() -> dict[str, str]:
    """The Postgres settings: MAILBOX_DATABASE_URL, else POSTGRES_*, else the local default."""
    url = os.environ.get("MAILBOX_DATABASE_URL")
    if url:
        explicit = env_from_database_url(url)
    elif os.environ.get("PERSISTENCE_MODULE", "").startswith(POSTGRES) or "POSTGRES_DBNAME" in os.environ:
        explicit = {"PERSISTENCE_MODULE": POSTGRES, "POSTGRES_DBNAME": os.environ.get("POSTGRES_DBNAME", "run_mailbox")}
    else:
        explicit = env_from_database_url(DEFAULT_POSTGRES_URL)
    return resolve_env(explicit)


def postgres_conninfo(env: Mapping[str, str], dbname: str | None = None) -> str:
    """A psycopg connection string from ``POSTGRES_*`` settings (another database if named)."""
    return psycopg.conninfo.make_conninfo(
        host=env.get("POSTGRES_HOST"),
        port=env.get("POSTGRES_PORT"),
        user=env.get("POSTGRES_USER"),
        password=env.get("POSTGRES_PASSWORD") or None,
        dbname=dbname or env.get("POSTGRES_DBNAME"),
    )


def ensure_postgres_database(env: dict[str, str]) -> None:
    """Creates the configured database, through the server's ``postgres`` database, if missing."""
    dbname = env.get("POSTGRES_DBNAME", "")
    try:
        with psycopg.connect(postgres_conninfo(env, "postgres"), autocommit=True, connect_timeout=5) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SettingsError(f"cannot reach {describe(env)}: {first_line}") from exc


def store_env(store: Store, *, default_sqlite: bool = True) -> dict[str, str] | None:
    """The resolved settings of the chosen store; None for the SQLite default when
    ``default_sqlite`` is False (the demo then makes a temporary file instead)."""
    if store.db is not None and store.postgres:
        raise SettingsError("--db and --postgres exclude each other")
    if store.db is not None:
        return resolve_env(sqlite_env(store.db))
    if store.postgres:
        env = postgres_env()
    elif "PERSISTENCE_MODULE" in os.environ or "MAILBOX_DATABASE_URL" in os.environ:
        env = resolve_env()
    elif default_sqlite:
        return resolve_env(sqlite_env(DEFAULT_SQLITE_PATH))
    else:
        return None
    if env.get("PERSISTENCE_MODULE", "").startswith(POSTGRES):
        ensure_postgres_database(env)
    return env


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Expected failures become one red line on stderr and exit status 2, never a traceback."""
    try:
        yield
    except (CliError, MailboxError, SettingsError, PersistenceError, psycopg.Error, sqlite3.Error) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        Console(stderr=True).print(f"[red]error: {message}[/]", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(USAGE_ERROR) from None


@contextlib.contextmanager
def opened(ctx: typer.Context) -> Iterator[MailboxService]:
    with reported_errors():
        env = store_env(ctx.ensure_object(Store))
        assert env is not None
        service = MailboxService(env=env)
        try:
            yield service
        finally:
            service.close()


def canonical_log(service: MailboxService, *, after: int = 0, upstream_only: bool = False) -> Iterator[CanonicalEvent]:
    """Every canonical envelope after position ``after``, up to the log's end when called."""
    end = service.recorder.max_notification_id() or 0
    position = after
    while position < end:
        page = service.canonical_events(after=position, limit=EXPORT_PAGE, upstream_only=upstream_only)
        yield from page
        # A page holds at most EXPORT_PAGE notifications, all after ``position``: when none
        # rendered, every notification up to position + EXPORT_PAGE has been read.
        position = page[-1].position if page else position + EXPORT_PAGE


# ---------------------------------------------------------------------- commands


@app.callback()
def main(ctx: typer.Context, db: DbOption = None, postgres: PostgresOption = False) -> None:
    """A durable, event-sourced mailbox for AI-agent runs."""
    ctx.obj = Store(db=db, postgres=postgres)


@app.command()
def demo(
    ctx: typer.Context,
    threads: Annotated[int, typer.Option(min=1, max=10_000, help="Agent threads to submit runs on.")] = 30,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker threads claiming runs.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the plan and of every attempt's fate.")] = 7,
    postgres: PostgresOption = False,
    db: DbOption = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the temporary SQLite file or Postgres schema.")] = False,
    time_limit: Annotated[float, typer.Option(min=1, help="Give up (exit 1) after this many seconds.")] = 60.0,
) -> None:
    """Run the main job end to end with worker threads, then check the summary against the log."""
    from infrastructure.demo import run_demo

    outer = ctx.ensure_object(Store)
    store = Store(db=db, postgres=postgres) if db is not None or postgres else outer
    with reported_errors():
        env = store_env(store, default_sqlite=False)
        try:
            code = run_demo(
                Console(), env, threads=threads, workers=workers, seed=seed, time_limit=time_limit, keep=keep
            )
        except KeyboardInterrupt:
            Console(stderr=True).print("[red]demo interrupted[/]")
            code = 130
    raise typer.Exit(code)


@app.command()
def export(
    ctx: typer.Context,
    after: Annotated[int, typer.Option(min=0, help="Start after this log position.")] = 0,
    upstream_only: Annotated[
        bool, typer.Option("--upstream-only", help="Only the kinds the upstream records.")
    ] = False,
) -> None:
    """Write the canonical event log as JSON lines to stdout."""
    with opened(ctx) as service:
        for event in canonical_log(service, after=after, upstream_only=upstream_only):
            typer.echo(event.to_json_line())


@app.command()
def stats(ctx: typer.Context) -> None:
    """Dispatches by status."""
    with opened(ctx) as service:
        counts = service.count_by_status()
        table = Table(title="dispatches by status")
        table.add_column("status")
        table.add_column("count", justify="right")
        for status, count in counts.items():
            table.add_row(status, str(count))
        table.add_row("[bold]total[/]", f"[bold]{sum(counts.values())}[/]")
        console = Console()
        console.print(f"log: {describe(service.env)}", highlight=False, soft_wrap=True)
        console.print(table)


@app.command()
def thread(ctx: typer.Context, thread_id: Annotated[str, typer.Argument(help="The thread's id.")]) -> None:
    """A thread's dispatches in claim order, and its runs with their checkpointed message ranges."""
    with opened(ctx) as service:
        dispatches = service.list_dispatches(thread_id)
        if not dispatches:
            raise CliError(f"thread not found: {thread_id!r} has no dispatches in {describe(service.env)}")
        mailbox = service.get_mailbox(thread_id)
        epoch = 0 if mailbox is None else mailbox.epoch
        table = Table(title=f"thread {thread_id} (epoch {epoch})", caption="in claim order", box=box.SIMPLE_HEAD)
        table.add_column("dispatch", overflow="fold")
        for column in ("run", "status", "prio", "epoch", "tries"):
            table.add_column(column, no_wrap=True)
        table.add_column("last error", overflow="fold")
        for d in dispatches:
            table.add_row(
                d.dispatch_id,
                d.run_id,
                d.status.value,
                str(d.priority),
                str(d.dispatch_epoch),
                f"{d.attempt_count}/{d.max_attempts}",
                d.last_error or "",
            )
        console = Console()
        console.print(table)
        runs = Table(title="runs", box=box.SIMPLE_HEAD)
        for column in ("run", "agent", "status", "termination", "checkpointed seqs", "decisions"):
            runs.add_column(column, overflow="fold")
        for run_id in dict.fromkeys(d.run_id for d in dispatches):
            run = service.get_run(run_id)
            spans = ", ".join(f"{r.first}-{r.last}" for r in run.checkpoints)
            termination = run.termination.type if run.termination else ""
            runs.add_row(run.run_id, run.agent_id, run.status.value, termination, spans, str(len(run.decisions)))
        console.print(runs)


# The view commands (rebuild, verify, pending, queue) register themselves on ``app``.
from infrastructure import cli_views  # noqa: E402, F401
