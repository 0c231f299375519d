"""``mailbox status`` (each view's lag, counts by status) and ``mailbox follow`` (keep the views current)."""

from __future__ import annotations

import faulthandler
import json
import signal
import sys
import threading
import time
from types import FrameType
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from run_mailbox.cli.app import CliError, app
from run_mailbox.cli.render import JsonOption, emit, iso
from run_mailbox.cli.view_commands import hosted
from run_mailbox.infrastructure.settings import describe
from run_mailbox.infrastructure.views.host import ViewHost

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
STOP_TIMEOUT_S = 10.0
"""How long ``follow`` waits, all views together, for its views to finish their batch once told to stop."""


def positions(host: ViewHost) -> dict[str, Any]:
    """The log's end and each view's position and lag behind it (in log positions)."""
    at = {name: store.position() for name, store in host.stores.items()}
    end = host.log_end()  # read after the views: a view is never ahead of it
    views = [{"view": name, "position": position, "lag": max(0, end - position)} for name, position in at.items()]
    return {"log_end": end, "views": views}


@app.command()
def status(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """Each view's position and lag behind the log's end, and counts by status.

    Views are shown as they stand (nothing is caught up); dispatches are counted in the dispatch index,
    runs in the run_status view.
    """
    with hosted(ctx) as host:
        service = host.service
        document = {
            "log": describe(service.env),
            "at": service.clock(),
            **positions(host),
            "dispatches": service.count_by_status(),
            "runs": host.run_counts(),
        }
        if json_output:
            emit(document)
            return
        console = Console(highlight=False, soft_wrap=True)
        console.print(f"log: {document['log']}, end at position {document['log_end']} ({iso(document['at'])})")
        views = Table(title="views", box=box.SIMPLE_HEAD)
        for column in ("view", "position", "lag"):
            views.add_column(column, justify="left" if column == "view" else "right")
        for row in document["views"]:
            lag = row["lag"]
            views.add_row(row["view"], str(row["position"]), f"[yellow]{lag}[/]" if lag else "0")
        console.print(views)
        for title, counts in (("dispatches", document["dispatches"]), ("runs (run_status view)", document["runs"])):
            table = Table(title=title, box=box.SIMPLE_HEAD)
            table.add_column("status")
            table.add_column("count", justify="right")
            for name, count in counts.items():
                table.add_row(name, str(count))
            table.add_row("[bold]total[/]", f"[bold]{sum(counts.values())}[/]")
            console.print(table)


@app.command()
def follow(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between progress reports.")] = 5.0,
    json_output: Annotated[bool, typer.Option("--json", help="Progress as JSON lines on stdout.")] = False,
) -> None:
    """Keep every view current until SIGINT or SIGTERM, reporting progress.

    LISTEN/NOTIFY on Postgres, polling elsewhere; each view's position and lag are printed every
    --interval seconds, and once more when it stops.
    """
    stop = threading.Event()
    failures: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def on_thread_error(args: threading.ExceptHookArgs) -> None:
        failures.append(f"{args.thread.name if args.thread else 'a view'}: {args.exc_value}")
        stop.set()

    previous_handlers = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    previous_hook, threading.excepthook = threading.excepthook, on_thread_error
    try:
        with hosted(ctx) as host:
            report = Reporter(host, json_output)
            report("following")
            threads = host.follow(stop)
            while not stop.wait(interval):
                report("following", quiet=True)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if failures:
                raise CliError(f"a view stopped: {failures[0]}")
            stuck = [thread.name for thread in threads if thread.is_alive()]
            if stuck:
                faulthandler.dump_traceback(file=sys.stderr, all_threads=True)  # where they are stuck, for the operator
                raise CliError(f"{', '.join(stuck)} did not stop within {STOP_TIMEOUT_S:g} s")
            report("stopped")
    finally:
        threading.excepthook = previous_hook
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


class Reporter:
    """Prints the views' positions, their lags and how far they got since the last report; ``quiet``
    reports only when something moved or a minute has passed."""

    HEARTBEAT = 60.0

    def __init__(self, host: ViewHost, json_output: bool) -> None:
        self.host = host
        self.json_output = json_output
        self.console = Console(highlight=False, soft_wrap=True)
        self.last: dict[str, Any] | None = None
        self.last_time = time.monotonic()

    def __call__(self, state: str, *, quiet: bool = False) -> None:
        now = self.host.service.clock()
        current = positions(self.host)
        seconds = max(time.monotonic() - self.last_time, 1e-9)
        if quiet and current == self.last and seconds < self.HEARTBEAT:
            return
        slowest = min((row["position"] for row in current["views"]), default=0)
        before = slowest if self.last is None else min((row["position"] for row in self.last["views"]), default=0)
        applied = slowest - before  # log positions every view got past since the last report
        self.last, self.last_time = current, time.monotonic()
        if self.json_output:
            line = {"state": state, "at": now, **current, "applied": applied}
            typer.echo(json.dumps(line, separators=(",", ":")))
            return
        views = ", ".join(f"{row['view']} {row['position']} (lag {row['lag']})" for row in current["views"])
        rate = f"; {applied / seconds:,.0f} positions/s" if applied else ""
        self.console.print(f"{iso(now)} {state}: log end {current['log_end']}; {views}{rate}")
