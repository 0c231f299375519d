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
from run_mailbox.cli.render import JsonOption, emit, when
from run_mailbox.infrastructure.views.host import ViewHost
from run_mailbox.infrastructure.views.verify import ViewDiff
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
    json_output: JsonOption = False,
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
        rebuilt = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, transient=True, disable=json_output) as progress:
            for name in names:
                task = progress.add_task(name, total=end)
                read, seconds = host.rebuild(name, partial(_advance, progress, task))
                rate = read / seconds if seconds > 0 else 0.0
                summary.add_row(name, str(read), f"{seconds:.2f}", f"{rate:,.0f}")
                rebuilt.append({"view": name, "events": read, "seconds": round(seconds, 3)})
        if json_output:
            emit({"log_end": end, "rebuilt": rebuilt})
        else:
            Console().print(summary)


def _advance(progress: Progress, task: TaskID, position: int) -> None:
    progress.update(task, completed=position)


@app.command()
def verify(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Rebuild every view into scratch tables, diff against the live ones, check every invariant."""
    with hosted(ctx) as host:
        diffs, problems = host.verify()
        failed = bool(problems) or any(diff.differences for diff in diffs)
        if json_output:
            views = [
                {"view": d.view, "position": d.position, "identical": not d.differences, "differences": d.differences}
                for d in diffs
            ]
            emit({"ok": not failed, "views": views, "invariant_problems": problems})
        else:
            _print_verification(diffs, problems)
    if failed:
        raise typer.Exit(1)


def _print_verification(diffs: list[ViewDiff], problems: list[str]) -> None:
    console = Console()
    for diff in diffs:
        if diff.differences:
            console.print(f"[red]view {diff.view} differs from a fresh replay at position {diff.position}:[/]")
            for line in diff.differences[:50]:
                console.print(f"  {line}", highlight=False, soft_wrap=True)
        else:
            console.print(f"view {diff.view}: identical to a fresh replay at position {diff.position}")
    for problem in problems[:50]:
        console.print(f"[red]invariant: {problem}[/]", highlight=False, soft_wrap=True)
    if not problems:
        console.print("invariants: every aggregate invariant holds")


@app.command()
def pending(
    ctx: typer.Context,
    thread_id: Annotated[str | None, typer.Option("--thread", help="Only this thread.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Tool calls waiting for a decision."""
    with hosted(ctx) as host:
        host.runner("permission_resolutions").catch_up()
        rows = host.pending_permissions(thread_id)
        if json_output:
            emit({"pending": rows})
            return
        now = host.service.clock()
        table = Table(title="pending permissions", box=box.SIMPLE_HEAD)
        for column in ("thread", "run", "tool call", "tool", "requested at"):
            table.add_column(column, overflow="fold", min_width=24 if column == "requested at" else None)
        for row in rows:
            table.add_row(row.thread_id, row.run_id, row.tool_call_id, row.tool_name or "", when(row.requested_at, now))
        Console().print(table)


@app.command()
def queue(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per section.")] = 20,
    json_output: JsonOption = False,
) -> None:
    """Ready dispatches (priority, age), claimed ones by lease expiry, dead letters."""
    with hosted(ctx) as host:
        host.runner("dispatch_queue").catch_up()
        sections = [
            ("ready", host.ready_dispatches(limit=limit), ("priority", "created_at")),
            ("claimed", host.claimed_dispatches(limit=limit), ("claimed_by", "lease_until")),
            ("dead letters", host.dead_letters(limit=limit), ("attempt_count", "completed_at", "last_error")),
        ]
        if json_output:
            emit({title.replace(" ", "_"): rows for title, rows, _ in sections})
            return
        now = host.service.clock()
        console = Console()
        for title, rows, extra in sections:
            table = Table(title=f"{title} ({len(rows)})", box=box.SIMPLE_HEAD)
            for column in ("dispatch", "thread", "run", *extra):
                timed = column.endswith(("_at", "_until"))
                table.add_column(
                    column.replace("completed_at", "dead-lettered"), overflow="fold", min_width=24 if timed else None
                )
            for row in rows:
                values = row.model_dump()
                cells = ("dispatch_id", "thread_id", "run_id", *extra)
                table.add_row(*(_cell(c, values[c], now) for c in cells))
            console.print(table)


def _cell(column: str, value: object, now: int) -> str:
    if value is None:
        return ""
    if column.endswith(("_at", "_until")) and isinstance(value, int):
        return when(value, now)
    return str(value)
