"""``mailbox`` commands over the projection views: rebuild, verify, pending, queue."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import partial
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from run_mailbox.cli.app import app, opened
from run_mailbox.infrastructure.views.host import ViewHost
from run_mailbox.projections.views import ALL_VIEWS

VIEW_NAMES = [view.name for view in ALL_VIEWS]


@contextlib.contextmanager
def hosted(ctx: typer.Context) -> Iterator[ViewHost]:
    with opened(ctx) as service:
        host = ViewHost(service)
        try:
            yield host
        finally:
            host.close()


@app.command()
def rebuild(
    ctx: typer.Context,
    view: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(VIEW_NAMES)}.")] = None,
    all_views: Annotated[bool, typer.Option("--all", help="Rebuild every view.")] = False,
) -> None:
    """Rebuild views from log position 0 into fresh tables and swap them in atomically."""
    if (view is None) == (not all_views):
        raise typer.BadParameter("name one VIEW or pass --all")
    names = VIEW_NAMES if all_views else [view or ""]
    if names[0] not in VIEW_NAMES:
        raise typer.BadParameter(f"unknown view {names[0]!r}; views: {', '.join(VIEW_NAMES)}")
    with hosted(ctx) as host:
        end = host.log_end()
        summary = Table(title="rebuilt", box=box.SIMPLE_HEAD)
        for column in ("view", "events", "seconds", "events/s"):
            summary.add_column(column, justify="right" if column != "view" else "left")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True) as progress:
            for name in names:
                task = progress.add_task(name, total=end)
                applied, seconds = host.rebuild(name, partial(_advance, progress, task))
                rate = applied / seconds if seconds > 0 else 0.0
                summary.add_row(name, str(applied), f"{seconds:.2f}", f"{rate:,.0f}")
        Console().print(summary)


def _advance(progress: Progress, task: TaskID, position: int) -> None:
    progress.update(task, completed=position)


@app.command()
def verify(ctx: typer.Context) -> None:
    """Rebuild every view into scratch tables, diff against the live ones, check every invariant."""
    with hosted(ctx) as host:
        diffs, problems = host.verify()
        console = Console()
        failed = bool(problems)
        for diff in diffs:
            if diff.differences:
                failed = True
                console.print(f"[red]view {diff.view} differs from a fresh replay at position {diff.position}:[/]")
                for line in diff.differences[:50]:
                    console.print(f"  {line}", highlight=False, soft_wrap=True)
            else:
                console.print(f"view {diff.view}: identical to a fresh replay at position {diff.position}")
        for problem in problems[:50]:
            console.print(f"[red]invariant: {problem}[/]", highlight=False, soft_wrap=True)
        if not problems:
            console.print("invariants: every aggregate invariant holds")
    if failed:
        raise typer.Exit(1)


@app.command()
def pending(
    ctx: typer.Context, thread_id: Annotated[str | None, typer.Option("--thread", help="Only this thread.")] = None
) -> None:
    """Tool calls waiting for a decision."""
    with hosted(ctx) as host:
        host.runner("permission_resolutions").catch_up()
        rows = host.pending_permissions(thread_id)
        table = Table(title="pending permissions", box=box.SIMPLE_HEAD)
        for column in ("thread", "run", "tool call", "tool", "requested at"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(row.thread_id, row.run_id, row.tool_call_id, row.tool_name or "", str(row.requested_at))
        Console().print(table)


@app.command()
def queue(
    ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per section.")] = 20
) -> None:
    """Ready dispatches (priority, age), claimed ones by lease expiry, dead letters."""
    with hosted(ctx) as host:
        host.runner("dispatch_queue").catch_up()
        console = Console()
        sections = [
            ("ready", host.ready_dispatches(limit=limit), ("priority", "created_at", "available_at")),
            ("claimed", host.claimed_dispatches(limit=limit), ("claimed_by", "lease_until")),
            ("dead letters", host.dead_letters(limit=limit), ("attempt_count", "last_error")),
        ]
        for title, rows, extra in sections:
            table = Table(title=f"{title} ({len(rows)})", box=box.SIMPLE_HEAD)
            for column in ("dispatch", "thread", "run", *extra):
                table.add_column(column, overflow="fold")
            for row in rows:
                values = row.model_dump()
                cells = ("dispatch_id", "thread_id", "run_id", *extra)
                table.add_row(*(str(values[c]) if values[c] is not None else "" for c in cells))
            console.print(table)
