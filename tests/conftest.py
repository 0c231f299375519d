"""One fixture runs every service test on every backend: in-memory, SQLite and real Postgres.

Postgres: ``MAILBOX_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/run_mailbox_test``);
the database is created if missing and every test gets a schema of its own, dropped after.
When no server answers, Postgres tests are skipped on a developer's machine and fail under
``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import psycopg
import pytest
from psycopg import sql

from run_mailbox.infrastructure.service import MailboxService
from tests.properties import _profiles  # noqa: F401  (registers the profiles for --hypothesis-profile anywhere)

os.environ.setdefault("EVENTSOURCING_DISABLE_REDEFINITION_CHECK", "y")

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/run_mailbox_test"
BACKENDS = ["memory", "sqlite", "postgres"]


class ManualClock:
    """A clock the test moves by hand (epoch milliseconds)."""

    def __init__(self, start: int = 1_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now

    def advance(self, ms: int) -> int:
        self.now += ms
        return self.now


def _admin_conninfo(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    dbname = parsed.path.lstrip("/")
    return parsed._replace(path="/postgres").geturl(), dbname


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("MAILBOX_TEST_DATABASE_URL", DEFAULT_URL)
    admin, dbname = _admin_conninfo(url)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
            if not exists:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    except psycopg.Error as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Postgres is required under CI but did not answer at {url}: {exc}")
        pytest.skip(f"no Postgres at {url}: {exc}")
    return url


@pytest.fixture
def postgres_env(postgres_url: str) -> Iterator[dict[str, str]]:
    """Environment for a service on a fresh, private Postgres schema."""
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield {"MAILBOX_DATABASE_URL": postgres_url, "POSTGRES_SCHEMA": schema}
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def backend_env(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if backend == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    if backend == "sqlite":
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "mailbox.db")}
    env: dict[str, str] = request.getfixturevalue("postgres_env")
    return env


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The persistence environment of one backend; tests using it run on all three."""
    return backend_env(request.param, request, tmp_path)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def service(env: dict[str, str], clock: ManualClock) -> Iterator[MailboxService]:
    app = MailboxService(env=env, clock=clock)
    yield app
    app.close()


@pytest.fixture(params=["sqlite", "postgres"])
def pair(
    request: pytest.FixtureRequest, tmp_path: Path, clock: ManualClock
) -> Iterator[tuple[MailboxService, MailboxService]]:
    """Two services on one store (a SQLite file or a Postgres schema), each with its own cache, as two
    processes would be."""
    if request.param == "sqlite":
        env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(tmp_path / "shared.db")}
    else:
        env = request.getfixturevalue("postgres_env")
    a, b = MailboxService(env=env, clock=clock), MailboxService(env=env, clock=clock)
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def pg_service(postgres_env: dict[str, str], clock: ManualClock) -> Iterator[MailboxService]:
    """A service on real Postgres only (concurrency tests)."""
    app = MailboxService(env=postgres_env, clock=clock)
    yield app
    app.close()


@pytest.fixture
def memory_service(clock: ManualClock) -> Iterator[MailboxService]:
    app = MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=clock)
    yield app
    app.close()
