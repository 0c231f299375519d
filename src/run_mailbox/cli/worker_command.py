"""``mailbox worker module:function``: run a worker with your handler until SIGTERM or Ctrl-C."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from run_mailbox.cli.app import CliError, DbOption, PostgresOption, app, reported_errors
from run_mailbox.cli.stores import Store, store_env
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.settings import describe
from run_mailbox.worker import Worker


def import_handler(spec: str) -> Any:
    """The callable named by ``module:function`` (``package.module:object.method`` too), imported
    with the current directory on the path, as ``python -m`` would."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CliError(f"the handler must be given as module:function, not {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}") from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(f"{module_name!r} has no {attribute!r}") from None
    if not callable(target):
        raise CliError(f"{spec} is not callable")
    return target


@app.command()
def worker(
    ctx: typer.Context,
    handler: Annotated[str, typer.Argument(help="Your handler, as module:function (sync or async).")],
    concurrency: Annotated[int, typer.Option(min=1, max=1000, help="Handlers running at once.")] = 4,
    lease_ms: Annotated[int, typer.Option(min=100, help="Each claim's lease, heartbeated every third.")] = 30_000,
    grace: Annotated[float, typer.Option(min=0, help="Seconds running handlers get to finish on stop.")] = 30.0,
    poll_interval: Annotated[
        float | None, typer.Option(min=0.001, help="Seconds between polls when idle (default 1 on Postgres, else 0.1).")
    ] = None,
    sweep_interval: Annotated[float, typer.Option(min=0.01, help="Seconds between sweeps of expired leases.")] = 5.0,
    consumer_id: Annotated[str | None, typer.Option(help="The name on its claims (default: host-pid-x).")] = None,
    log_level: Annotated[str, typer.Option(help="Logging level of the worker's log lines on stderr.")] = "INFO",
    postgres: PostgresOption = False,
    db: DbOption = None,
) -> None:
    """Run a worker: claim dispatches, run HANDLER on each, report how each went, until SIGTERM or Ctrl-C.

    A first SIGTERM or Ctrl-C stops claiming and gives running handlers --grace seconds to finish; the
    dispatches still running then are released (requeued at once). A second signal ends the grace period.
    """
    outer = ctx.ensure_object(Store)
    store = Store(db=db, postgres=postgres) if db is not None or postgres else outer
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with reported_errors():
        function = import_handler(handler)
        env = store_env(store)
        assert env is not None
        service = MailboxService(env=env)
    try:
        runner = Worker(
            service,
            function,
            concurrency=concurrency,
            lease_ms=lease_ms,
            grace_s=grace,
            poll_interval_s=poll_interval,
            sweep_interval_s=sweep_interval,
            consumer_id=consumer_id,
        )
        err = Console(stderr=True)
        err.print(f"worker {runner.consumer_id}: {handler} x{concurrency} on {describe(env)}", highlight=False)
        runner.run(handle_signals=True)
        err.print(f"worker {runner.consumer_id} stopped: {dict(runner.stats)}", highlight=False)
    finally:
        service.close()
