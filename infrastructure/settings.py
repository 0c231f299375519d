"""Persistence settings, read from the environment the way the eventsourcing library does.

- ``PERSISTENCE_MODULE=eventsourcing.postgres`` with ``POSTGRES_*`` (or one
  ``MAILBOX_DATABASE_URL=postgresql://user:password@host:port/dbname``);
- ``PERSISTENCE_MODULE=eventsourcing.sqlite`` with ``SQLITE_DBNAME``;
- in-memory otherwise.

``POSTGRES_ENABLE_DB_FUNCTIONS`` is refused: in eventsourcing 9.5.6 it skips the table
lock (subscribers then miss events) and bypasses the insert hook that writes the
idempotency and index rows.

``POSTGRES_SCHEMA`` must be a name Postgres does not need quoted (lowercase letters, digits
and ``_``): the library's type lookup does not quote it, and a quoted name once left index
rows committed without their events.

Write transactions run with ``MAILBOX_LOCK_TIMEOUT_MS`` (default 5000, else
``POSTGRES_LOCK_TIMEOUT`` seconds), ``MAILBOX_STATEMENT_TIMEOUT_MS`` (30000) and
``MAILBOX_IDLE_IN_TRANSACTION_TIMEOUT_MS`` (5000, else
``POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT`` seconds); 0 disables one.

``MAILBOX_VACUUM_HEADS_EVERY`` (default 2000) is how many ready-head rows the writes write or delete
(two per dispatch, most often) between two vacuums of that table by the service; 0 leaves it to
autovacuum (``pg_heads_vacuum``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

import psycopg
from eventsourcing.utils import get_topic

from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.limits import Limits
from run_mailbox.infrastructure.persistence.pg_heads_vacuum import DEFAULT_EVERY as DEFAULT_VACUUM_EVERY
from run_mailbox.infrastructure.persistence.postgres import PostgresMailboxRecorder, StoreTimeouts
from run_mailbox.infrastructure.persistence.sqlite import SQLiteMailboxRecorder

POSTGRES = "eventsourcing.postgres"
SQLITE = "eventsourcing.sqlite"
POPO = "eventsourcing.popo"
DEFAULT_DBNAME = "run_mailbox"
MAX_VACUUM_EVERY = 10**9
MAX_DIGITS = 18  # whole-number settings: nothing meaningful is longer

# Numeric Postgres settings: (name, smallest, largest); empty means the library's default.
_NUMBERS = (
    ("POSTGRES_PORT", 1, 65_535),
    ("POSTGRES_POOL_SIZE", 1, 1_000),
    ("POSTGRES_MAX_OVERFLOW", 0, 1_000),
    ("POSTGRES_MAX_WAITING", 0, 1_000_000),
    ("POSTGRES_CONNECT_TIMEOUT", 0, 86_400),
    ("POSTGRES_CONN_MAX_AGE", 0, 10**9),
    ("POSTGRES_LOCK_TIMEOUT", 0, 86_400),
    ("POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT", 0, 86_400),
)


class SettingsError(ValueError):
    pass


_UNQUOTED_NAME = re.compile(r"[a-z_][a-z0-9_]*")
MAX_IDENTIFIER_BYTES = 63


def check_schema_name(schema: str) -> str:
    """``schema`` when Postgres needs no quotes for it (keywords are checked at connection time)."""
    if not _UNQUOTED_NAME.fullmatch(schema) or len(schema.encode()) > MAX_IDENTIFIER_BYTES:
        raise SettingsError(
            f"invalid POSTGRES_SCHEMA={schema!r}: use lowercase letters, digits and '_', starting with a "
            f"letter or '_', at most {MAX_IDENTIFIER_BYTES} bytes (names that need quoting are not supported)"
        )
    return schema


def _whole(text: str) -> int | None:
    """``text`` as a whole number >= 0 written in ASCII digits, else None."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS else None


def _milliseconds(env: Mapping[str, str], key: str, default: int, seconds_key: str | None = None) -> int:
    text = (env.get(key) or "").strip()
    scale = 1
    if not text and seconds_key is not None:
        text, scale = (env.get(seconds_key) or "").strip(), 1000
    if not text:
        return default
    value = _whole(text)
    if value is None:
        name = key if scale == 1 else seconds_key
        raise SettingsError(f"invalid {name}={text!r}: expected a whole number >= 0 (0 disables the timeout)")
    return value * scale


def store_timeouts(env: Mapping[str, str]) -> StoreTimeouts:
    """The write transactions' timeouts (see the module's docstring)."""
    default = StoreTimeouts()
    return StoreTimeouts(
        lock_ms=_milliseconds(env, "MAILBOX_LOCK_TIMEOUT_MS", default.lock_ms, "POSTGRES_LOCK_TIMEOUT"),
        statement_ms=_milliseconds(env, "MAILBOX_STATEMENT_TIMEOUT_MS", default.statement_ms),
        idle_in_transaction_ms=_milliseconds(
            env,
            "MAILBOX_IDLE_IN_TRANSACTION_TIMEOUT_MS",
            default.idle_in_transaction_ms,
            "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT",
        ),
    )


def heads_vacuum_every(env: Mapping[str, str]) -> int:
    """``MAILBOX_VACUUM_HEADS_EVERY``: head rows changed between two vacuums of the ready heads."""
    text = (env.get("MAILBOX_VACUUM_HEADS_EVERY") or "").strip()
    if not text:
        return DEFAULT_VACUUM_EVERY
    value = _whole(text)
    if value is None or value > MAX_VACUUM_EVERY:
        raise SettingsError(
            f"invalid MAILBOX_VACUUM_HEADS_EVERY={text!r}: expected a whole number from 0 to {MAX_VACUUM_EVERY} "
            "(0 leaves the ready heads to autovacuum)"
        )
    return value


def mask_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for messages)."""
    return re.sub(r"^([^:/?#]+://[^/?#@]*?:)[^/?#]*@", r"\1***@", url)


def env_from_database_url(url: str) -> dict[str, str]:
    """``POSTGRES_*`` settings from a ``postgresql://`` URL (SettingsError, without the password, if invalid)."""
    shown = repr(mask_url(url))
    try:
        parsed = urlparse(url)
        port = parsed.port
    except ValueError as exc:
        raise SettingsError(f"invalid MAILBOX_DATABASE_URL={shown}: {str(exc).split(' as ')[0].lower()}") from None
    if parsed.scheme not in ("postgres", "postgresql"):
        raise SettingsError(f"invalid MAILBOX_DATABASE_URL={shown}: the scheme must be postgresql://")
    dbname = parsed.path.lstrip("/")
    if not dbname:
        raise SettingsError(f"invalid MAILBOX_DATABASE_URL={shown}: it names no database")
    return {
        "PERSISTENCE_MODULE": POSTGRES,
        "POSTGRES_DBNAME": unquote(dbname),
        "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(port or 5432),
        "POSTGRES_USER": unquote(parsed.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parsed.password or ""),
    }


def default_sqlite_path() -> Path:
    """The command line's default log: ``$XDG_DATA_HOME/run-mailbox/mailbox.db`` (``~/.local/share`` by default)."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "run-mailbox" / "mailbox.db"


def sqlite_env(path: str | Path) -> dict[str, str]:
    """Settings for the SQLite file at ``path`` (nothing is created here)."""
    return {"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": str(Path(path).expanduser())}


def postgres_conninfo(env: Mapping[str, str], dbname: str | None = None) -> str:
    """A psycopg connection string from ``POSTGRES_*`` settings (another database if named)."""
    return psycopg.conninfo.make_conninfo(
        host=env.get("POSTGRES_HOST"),
        port=env.get("POSTGRES_PORT"),
        user=env.get("POSTGRES_USER"),
        password=env.get("POSTGRES_PASSWORD") or None,
        dbname=dbname or env.get("POSTGRES_DBNAME"),
    )


def resolve_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The service's effective environment: defaults, then os.environ, then ``env``."""
    explicit = dict(env or {})
    merged = {**os.environ, **explicit}
    url = merged.pop("MAILBOX_DATABASE_URL", None)
    if url and "PERSISTENCE_MODULE" not in explicit:
        merged.update(env_from_database_url(url))
    module = merged.get("PERSISTENCE_MODULE", "")
    if module and not module.startswith((POSTGRES, SQLITE, POPO)):
        raise SettingsError(f"unknown PERSISTENCE_MODULE={module!r}: use {POSTGRES}, {SQLITE} or {POPO} (in memory)")
    if module.startswith(POSTGRES):
        _check_numbers(merged)
        flag = merged.get("POSTGRES_ENABLE_DB_FUNCTIONS", "").strip().lower()
        if flag in ("y", "yes", "t", "true", "on", "1"):
            raise SettingsError(
                "POSTGRES_ENABLE_DB_FUNCTIONS must stay off: in eventsourcing 9.5.6 it skips the "
                "events table lock and the insert hook that writes idempotency and index rows"
            )
        schema = (merged.get("MAILBOXSERVICE_POSTGRES_SCHEMA") or merged.get("POSTGRES_SCHEMA") or "").strip()
        if schema:
            check_schema_name(schema)
        store_timeouts(merged)  # refuses a malformed timeout now rather than at the first write
        heads_vacuum_every(merged)
        merged.setdefault("APPLICATION_RECORDER_TOPIC", get_topic(PostgresMailboxRecorder))
        # How long a caller waits for a pooled connection (the library's default is 30 s, per attempt).
        merged.setdefault("POSTGRES_CONNECT_TIMEOUT", "5")
        merged.setdefault("POSTGRES_POOL_SIZE", "2")
        merged.setdefault("POSTGRES_MAX_OVERFLOW", "14")
        if (
            "MAILBOX_IDLE_IN_TRANSACTION_TIMEOUT_MS" in merged
            or "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT" not in merged
        ):
            # The library sets it on every pooled connection it opens (in seconds).
            idle_ms = store_timeouts(merged).idle_in_transaction_ms
            # (the library wants whole seconds)
            merged["POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT"] = str(
                0 if idle_ms == 0 else max(1, round(idle_ms / 1000))
            )
        merged.setdefault("POSTGRES_HOST", "127.0.0.1")
        merged.setdefault("POSTGRES_PORT", "5432")
        merged.setdefault("POSTGRES_USER", "postgres")
        merged.setdefault("POSTGRES_PASSWORD", "")
        if not merged.get("POSTGRES_DBNAME"):
            merged["POSTGRES_DBNAME"] = DEFAULT_DBNAME
    elif module.startswith(SQLITE):
        merged.setdefault("APPLICATION_RECORDER_TOPIC", get_topic(SQLiteMailboxRecorder))
    return merged


def _check_numbers(env: Mapping[str, str]) -> None:
    for name, low, high in _NUMBERS:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"invalid {name}={raw!r}: must be a number") from None
        if not low <= value <= high or (name != "POSTGRES_CONN_MAX_AGE" and not value.is_integer()):
            raise SettingsError(f"invalid {name}={raw!r}: must be a whole number from {low} to {high}")


def limits_from_env(env: Mapping[str, str]) -> Limits:
    """The command limits the ``MAILBOX_MAX_*`` variables set (SettingsError naming a bad one)."""
    try:
        return Limits.from_env(env)
    except InvalidArgument as exc:
        raise SettingsError(f"invalid {exc.field}={exc.value!r}: {exc.reason}") from None


def describe(env: Mapping[str, str]) -> str:
    """A one-line, password-free description of where the log lives."""
    module = env.get("PERSISTENCE_MODULE", "")
    if module.startswith(POSTGRES):
        return (
            f"postgres {env.get('POSTGRES_USER')}@{env.get('POSTGRES_HOST')}:"
            f"{env.get('POSTGRES_PORT')}/{env.get('POSTGRES_DBNAME')}"
        )
    if module.startswith(SQLITE):
        return f"sqlite {env.get('SQLITE_DBNAME')}"
    return "in-memory"
