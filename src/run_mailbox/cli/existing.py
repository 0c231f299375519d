"""Read commands open a log that exists, and write nothing to find out.

``mailbox stats --db typo.db`` must not create ``typo.db`` (or its folders), an unrelated SQLite
file must not get the mailbox's tables, and ``--postgres`` must not create a database: each is
refused with one line instead. A log whose tables are at the current schema version is opened
without the service's create-table step, so reading it writes nothing; an older one is migrated
forward first, as every service start does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
from psycopg import sql

from run_mailbox.infrastructure.persistence import migrations
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.settings import POSTGRES, SQLITE, SettingsError, describe, postgres_conninfo

PREFIX = MailboxService.name.lower()


def existing_log(env: dict[str, str]) -> dict[str, str]:
    """The settings to read the log ``env`` names; SettingsError when there is none there."""
    module = env.get("PERSISTENCE_MODULE", "")
    if module.startswith(SQLITE):
        version = _sqlite_version(env.get("SQLITE_DBNAME", ""))
        latest = migrations.SQLITE[-1].version
    elif module.startswith(POSTGRES):
        version = _postgres_version(env)
        latest = migrations.POSTGRES[-1].version
    else:
        return env  # in memory: nothing to create or find
    if version == latest:
        return {**env, "CREATE_TABLE": "n"}
    return env


def _in_memory(name: str) -> bool:
    return name in ("", ":memory:") or (name.startswith("file:") and "mode=memory" in name)


def _sqlite_version(name: str) -> int | None:
    if _in_memory(name):
        return None
    path = Path(name).expanduser()
    if not path.is_file():
        raise SettingsError(f"no log at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "stored_events" not in tables or not {f"{PREFIX}_dispatch_index", "mailbox_dispatch_index"} & tables:
                raise SettingsError(f"no mailbox log in {path}: it has no mailbox tables (nothing was changed)")
            if f"{PREFIX}_schema_version" not in tables:
                return 1  # made by run-mailbox 0.1.0
            return int(conn.execute(f"SELECT max(version) FROM {PREFIX}_schema_version").fetchone()[0] or 0)
    except sqlite3.DatabaseError as exc:
        raise SettingsError(f"cannot read {path} as a mailbox log: {exc}") from None


def _postgres_version(env: dict[str, str]) -> int:
    schema = env.get("POSTGRES_SCHEMA") or "public"
    try:
        with psycopg.connect(postgres_conninfo(env), connect_timeout=5, autocommit=True) as conn:

            def found(name: str) -> bool:
                qualified = sql.Identifier(schema, f"{PREFIX}_{name}").as_string(conn)
                return conn.execute("SELECT to_regclass(%s) IS NOT NULL", [qualified]).fetchone() == (True,)

            if not found("events"):
                raise SettingsError(f"no mailbox log in {describe(env)}, schema {schema!r} (nothing was created)")
            if not found("schema_version"):
                return 1
            table = sql.Identifier(schema, f"{PREFIX}_schema_version")
            row = conn.execute(sql.SQL("SELECT max(version) FROM {}").format(table)).fetchone()
            return int(row[0] or 0) if row else 0
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if f'database "{env.get("POSTGRES_DBNAME")}" does not exist' in str(exc):
            raise SettingsError(
                f"no database at {describe(env)} (read commands create nothing; `mailbox demo --postgres` does)"
            ) from None
        raise SettingsError(f"cannot reach {describe(env)}: {first}") from None
