"""The demo's store: a temporary SQLite file, a fresh Postgres schema, or one the user names (which must be empty)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console

from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.settings import POSTGRES, SQLITE, SettingsError, describe, postgres_conninfo, sqlite_env


@contextlib.contextmanager
def demo_store(env: Mapping[str, str] | None, keep: bool, console: Console) -> Iterator[dict[str, str]]:
    """A fresh store for one demo: a temporary SQLite file when ``env`` is None, a new schema
    when ``env`` is Postgres, else ``env`` itself (open_service refuses it if it holds events)."""
    if env is None:
        folder = Path(tempfile.mkdtemp(prefix="mailbox-demo-"))
        try:
            yield sqlite_env(folder / "mailbox.db")
        finally:
            if keep:
                console.print(f"kept the SQLite log: --db {folder / 'mailbox.db'}", highlight=False, soft_wrap=True)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        return
    if not is_postgres(env):
        yield dict(env)
        return
    schema = f"mailbox_demo_{uuid.uuid4().hex[:12]}"
    _execute(env, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield {**env, "POSTGRES_SCHEMA": schema}
    finally:
        if keep:
            console.print(f"kept the Postgres log: POSTGRES_SCHEMA={schema}", highlight=False, soft_wrap=True)
        else:
            _execute(env, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def is_postgres(env: Mapping[str, str]) -> bool:
    return env.get("PERSISTENCE_MODULE", "").startswith(POSTGRES)


def where(env: Mapping[str, str]) -> str:
    schema = env.get("POSTGRES_SCHEMA") if is_postgres(env) else None
    return describe(env) + (f" (schema {schema})" if schema else "")


def _execute(env: Mapping[str, str], statement: sql.Composed) -> None:
    with psycopg.connect(postgres_conninfo(env), autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


def open_service(env: Mapping[str, str], workers: int) -> MailboxService:
    """The demo's service; refuses a store that already holds events (the checks must be exact)."""
    if is_postgres(env):
        env = {"POSTGRES_POOL_SIZE": str(workers + 2), "POSTGRES_MAX_OVERFLOW": str(workers + 2), **env}
    service = MailboxService(env=env)
    if service.recorder.max_notification_id():
        service.close()
        hint = " (pick a new --db path)" if env.get("PERSISTENCE_MODULE", "").startswith(SQLITE) else ""
        raise SettingsError(f"the demo needs an empty store, but {describe(env)} already holds events{hint}")
    return service
