"""The ``mailbox`` typer application, its global options, and how every command opens the log
and reports an expected failure (one red line on stderr, exit status 2, never a traceback)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Annotated

import psycopg
import typer
from eventsourcing.domain import EventSourcingError
from rich.console import Console

from run_mailbox.cli.stores import Store, read_env
from run_mailbox.domain.errors import MailboxError
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.settings import SettingsError
from run_mailbox.projections.view import RebuildFailed

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


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"mailbox (run-mailbox) {metadata.version('run-mailbox')}")
        raise typer.Exit()


VersionOption = Annotated[
    bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
]


class CliError(Exception):
    """A refusal of the command line itself (for example, an unknown thread)."""


@app.callback()
def main(
    ctx: typer.Context, db: DbOption = None, postgres: PostgresOption = False, version: VersionOption = False
) -> None:
    """A durable, event-sourced mailbox for AI-agent runs."""
    ctx.obj = Store(db=db, postgres=postgres)


@contextlib.contextmanager
def reported_errors() -> Iterator[None]:
    """Expected failures become one red line on stderr and exit status 2, never a traceback."""
    try:
        yield
    except (
        CliError,
        MailboxError,
        SettingsError,
        RebuildFailed,
        EventSourcingError,
        psycopg.Error,
        sqlite3.Error,
        OSError,
    ) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        Console(stderr=True).print(f"[red]error: {message}[/]", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(USAGE_ERROR) from None


@contextlib.contextmanager
def opened(ctx: typer.Context) -> Iterator[MailboxService]:
    """The service on the store the global options chose, closed afterwards."""
    with reported_errors():
        service = MailboxService(env=read_env(ctx.ensure_object(Store)))
        try:
            yield service
        finally:
            service.close()
