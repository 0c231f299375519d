"""``mailbox export``, ``stats`` and ``thread``: read the log and the dispatch index (``--json``: one JSON
document; export writes JSON lines)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from run_mailbox.cli.app import CliError, app, opened
from run_mailbox.cli.render import JsonOption, emit
from run_mailbox.infrastructure.settings import describe


@app.command()
def export(
    ctx: typer.Context,
    after: Annotated[int, typer.Option(min=0, help="Start after this log position.")] = 0,
    upstream_only: Annotated[
        bool, typer.Option("--upstream-only", help="Only the kinds the upstream records.")
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Accepted for symmetry: export is JSON lines.")] = False,
) -> None:
    """Write the canonical event log as JSON lines to stdout."""
    with opened(ctx) as service:
        for event in service.iter_canonical_events(after=after, upstream_only=upstream_only):
            typer.echo(event.to_json_line())


@app.command()
def stats(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Dispatches by status."""
    with opened(ctx) as service:
        counts = service.count_by_status()
        if json_output:
            emit({"log": describe(service.env), "dispatches": counts, "total": sum(counts.values())})
            return
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
def thread(
    ctx: typer.Context,
    thread_id: Annotated[str, typer.Argument(help="The thread's id.")],
    json_output: JsonOption = False,
) -> None:
    """A thread's dispatches in claim order, and its runs with their checkpointed message ranges."""
    with opened(ctx) as service:
        dispatches = service.list_dispatches(thread_id)
        if not dispatches:
            raise CliError(f"thread not found: {thread_id!r} has no dispatches in {describe(service.env)}")
        mailbox = service.get_mailbox(thread_id)
        epoch = 0 if mailbox is None else mailbox.epoch
        runs = [service.get_run(run_id) for run_id in dict.fromkeys(d.run_id for d in dispatches)]
        if json_output:
            emit({"thread_id": thread_id, "epoch": epoch, "dispatches": dispatches, "runs": runs})
            return
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
        run_table = Table(title="runs", box=box.SIMPLE_HEAD)
        for column in ("run", "agent", "status", "termination", "checkpointed seqs", "decisions", "redrive of"):
            run_table.add_column(column, overflow="fold")
        for run in runs:
            spans = ", ".join(f"{r.first}-{r.last}" for r in run.checkpoints)
            termination = run.termination.type if run.termination else ""
            run_table.add_row(
                run.run_id,
                run.agent_id,
                run.status.value,
                termination,
                spans,
                str(len(run.decisions)),
                run.redrive_of or "",
            )
        console.print(run_table)
