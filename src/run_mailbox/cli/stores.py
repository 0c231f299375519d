"""Where the command line's log lives: ``--db PATH``, ``--postgres``, the environment, or the default file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from run_mailbox.cli.existing import existing_log
from run_mailbox.infrastructure.settings import (
    DEFAULT_DBNAME,
    POSTGRES,
    SettingsError,
    default_sqlite_path,
    describe,
    env_from_database_url,
    postgres_conninfo,
    resolve_env,
    sqlite_env,
)


@dataclass
class Store:
    db: Path | None = None
    postgres: bool = False


def postgres_env() -> dict[str, str]:
    """The Postgres settings: MAILBOX_DATABASE_URL, else the POSTGRES_* variables that are set,
    each defaulting to ``postgresql://postgres@127.0.0.1:5432/run_mailbox``."""
    url = os.environ.get("MAILBOX_DATABASE_URL")
    if url:
        return resolve_env(env_from_database_url(url))
    return resolve_env(
        {"PERSISTENCE_MODULE": POSTGRES, "POSTGRES_DBNAME": os.environ.get("POSTGRES_DBNAME") or DEFAULT_DBNAME}
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


def read_env(store: Store) -> dict[str, str]:
    """The settings of the chosen store for a read command: its log must exist (SettingsError
    otherwise), and nothing is created to find out."""
    env = store_env(store)
    assert env is not None
    return existing_log(env)


def store_env(store: Store, *, default_sqlite: bool = True) -> dict[str, str] | None:
    """The resolved settings of the chosen store (nothing is created); None for the SQLite
    default when ``default_sqlite`` is False (the demo then makes a temporary file instead)."""
    if store.db is not None and store.postgres:
        raise SettingsError("--db and --postgres exclude each other")
    if store.db is not None:
        return resolve_env(sqlite_env(store.db))
    if store.postgres:
        env = postgres_env()
    elif "PERSISTENCE_MODULE" in os.environ or "MAILBOX_DATABASE_URL" in os.environ:
        env = resolve_env()
    elif default_sqlite:
        return resolve_env(sqlite_env(default_sqlite_path()))
    else:
        return None
    return env
