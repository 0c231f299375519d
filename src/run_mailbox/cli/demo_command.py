"""``mailbox demo``: the main job end to end, checked against its own log."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from run_mailbox.cli.app import DbOption, PostgresOption, app, reported_errors
from run_mailbox.cli.stores import Store, ensure_postgres_database, store_env
from run_mailbox.demo import run_demo
from run_mailbox.infrastructure.settings import POSTGRES


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
    outer = ctx.ensure_object(Store)
    store = Store(db=db, postgres=postgres) if db is not None or postgres else outer
    with reported_errors():
        env = store_env(store, default_sqlite=False)
        if env is not None and env.get("PERSISTENCE_MODULE", "").startswith(POSTGRES):
            ensure_postgres_database(env)  # the demo may create its database; read commands never do
        try:
            code = run_demo(
                Console(), env, threads=threads, workers=workers, seed=seed, time_limit=time_limit, keep=keep
            )
        except KeyboardInterrupt:
            Console(stderr=True).print("[red]demo interrupted[/]")
            code = 130
    raise typer.Exit(code)
