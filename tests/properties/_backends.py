"""Where a state-machine example keeps its log: one fresh store per example.

Each factory is a context manager yielding the service environment; leaving it removes the
store (a temporary SQLite file, a private Postgres schema).
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

Backend = Callable[[], AbstractContextManager[dict[str, str]]]


@contextmanager
def memory() -> Iterator[dict[str, str]]:
    yield {"PERSISTENCE_MODULE": "eventsourcing.popo"}


@contextmanager
def sqlite() -> Iterator[dict[str, str]]:
    with tempfile.TemporaryDirectory(prefix="mailbox-props-") as folder:
        yield {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(Path(folder) / "mailbox.db")}


def postgres(url: str) -> Backend:
    """A backend making a private schema per example on the server at ``url``."""

    @contextmanager
    def schema() -> Iterator[dict[str, str]]:
        name = f"p_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        try:
            yield {"MAILBOX_DATABASE_URL": url, "POSTGRES_SCHEMA": name}
        finally:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))

    return schema
