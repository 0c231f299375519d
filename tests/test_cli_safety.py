"""The command line never writes when asked to read, never prints a traceback for bad settings,
never echoes a password, and honours the ``POSTGRES_*`` variables as the README documents."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner

from run_mailbox.cli import stores as cli
from run_mailbox.cli.main import app
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.settings import SQLITE, SettingsError, resolve_env
from run_mailbox.infrastructure.views import host as host_module
from run_mailbox.projections.view import RebuildFailed

READ_COMMANDS = [
    ["stats"],
    ["export"],
    ["thread", "thread-1"],
    ["queue"],
    ["pending"],
    ["verify"],
    ["rebuild", "--all"],
]
STORE_VARIABLES = (
    "PERSISTENCE_MODULE",
    "MAILBOX_DATABASE_URL",
    "SQLITE_DBNAME",
    "POSTGRES_DBNAME",
    "POSTGRES_HOST",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_SCHEMA",
    "POSTGRES_POOL_SIZE",
)


@pytest.fixture(autouse=True)
def no_store_in_environment(monkeypatch, tmp_path):
    for name in STORE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def refused(result, start: str) -> str:
    """The one error line of an exit-2 refusal (no traceback, nothing on stdout)."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {start}"), lines[0]
    return lines[0]


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def dump(path: Path) -> list[str]:
    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as conn:
        return list(conn.iterdump())


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_a_read_command_on_a_missing_file_creates_neither_the_file_nor_its_folders(runner, tmp_path, command):
    before = files_under(tmp_path)
    for path in (tmp_path / "typo.db", tmp_path / "no" / "such" / "folder" / "typo.db"):
        refused(runner.invoke(app, ["--db", str(path), *command]), f"no log at {path}")
    assert files_under(tmp_path) == before


def test_a_read_command_without_any_setting_does_not_create_the_default_log(runner, tmp_path):
    before = files_under(tmp_path)
    refused(runner.invoke(app, ["stats"]), f"no log at {tmp_path / 'xdg' / 'run-mailbox' / 'mailbox.db'}")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_a_read_command_on_an_unrelated_sqlite_file_adds_no_table(runner, tmp_path, command):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    before, files = dump(path), files_under(tmp_path)
    refused(runner.invoke(app, ["--db", str(path), *command]), f"no mailbox log in {path}")
    assert dump(path) == before
    assert files_under(tmp_path) == files


def test_a_file_that_is_not_a_database_is_refused_in_one_line(runner, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a database\n" * 100)
    refused(runner.invoke(app, ["--db", str(path), "stats"]), f"cannot read {path} as a mailbox log")
    assert path.read_text() == "not a database\n" * 100


def test_reading_a_mailbox_log_changes_nothing_in_it(runner, tmp_path):
    path = tmp_path / "mailbox.db"
    service = MailboxService(env={"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": str(path)})
    service.submit("thread-1", "run-1", dispatch_id="d1", now=1_000)
    service.close()
    before = dump(path)
    for command in (["stats"], ["export"], ["thread", "thread-1"]):
        result = runner.invoke(app, ["--db", str(path), *command])
        assert result.exit_code == 0, result.output
    assert dump(path) == before


# ---------------------------------------------------------------------- Postgres


@pytest.mark.postgres
def test_postgres_read_commands_create_no_database(runner, postgres_url, monkeypatch):
    name = f"run_mailbox_absent_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("POSTGRES_DBNAME", name)
    for command in (["stats"], ["export"], ["queue"]):
        refused(runner.invoke(app, ["--postgres", *command]), "no database at postgres postgres@127.0.0.1:5432/" + name)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None


@pytest.mark.postgres
def test_postgres_read_commands_create_no_table_in_an_empty_schema(runner, postgres_env, postgres_url, monkeypatch):
    for name, value in postgres_env.items():
        monkeypatch.setenv(name, value)
    schema = postgres_env["POSTGRES_SCHEMA"]
    refused(runner.invoke(app, ["--postgres", "stats"]), "no mailbox log in postgres")
    refused(runner.invoke(app, ["export"]), "no mailbox log in postgres")
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        query = sql.SQL("SELECT count(*) FROM pg_tables WHERE schemaname = %s")
        assert conn.execute(query, [schema]).fetchone() == (0,)


# ---------------------------------------------------------------------- bad settings


URL = "MAILBOX_DATABASE_URL"
PG = {"PERSISTENCE_MODULE": "eventsourcing.postgres"}
POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
BAD_SETTINGS = [
    ({URL: "postgresql://me:s3cret-pw@127.0.0.1:abc/db"}, "invalid MAILBOX_DATABASE_URL='postgresql://me:***@"),
    ({URL: "postgresql://me:s3cret-pw@127.0.0.1:99999/db"}, "invalid MAILBOX_DATABASE_URL='postgresql://me:***@"),
    ({URL: "mysql://me:s3cret-pw@db.internal/db"}, "invalid MAILBOX_DATABASE_URL='mysql://me:***@"),
    ({URL: "postgresql://me:s3cret-pw@db.internal"}, "invalid MAILBOX_DATABASE_URL="),
    ({**PG, "POSTGRES_POOL_SIZE": "abc"}, "invalid POSTGRES_POOL_SIZE='abc'"),
    ({**PG, "POSTGRES_PORT": "fivefour"}, "invalid POSTGRES_PORT='fivefour'"),
    ({"PERSISTENCE_MODULE": "eventsourcing.nosuch"}, "unknown PERSISTENCE_MODULE='eventsourcing.nosuch'"),
    ({"PERSISTENCE_MODULE": "mymodule"}, "unknown PERSISTENCE_MODULE='mymodule'"),
    ({**POPO, "MAILBOX_MAX_JSON_DEPTH": "deep"}, "invalid MAILBOX_MAX_JSON_DEPTH='deep'"),
    ({**POPO, "MAILBOX_MAX_JSON_DEPTH": "500"}, "invalid MAILBOX_MAX_JSON_DEPTH=500"),
]


@pytest.mark.parametrize(("variables", "start"), BAD_SETTINGS)
@pytest.mark.parametrize("args", [["stats"], ["export"], ["demo", "--threads", "1"]], ids=lambda a: a[0])
def test_bad_settings_are_one_line_without_a_traceback_or_the_password(runner, monkeypatch, variables, start, args):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, args)
    refused(result, start)
    assert "s3cret-pw" not in result.output


@pytest.mark.parametrize(("variables", "start"), [case for case in BAD_SETTINGS if URL in case[0]])
def test_a_bad_database_url_is_refused_for_postgres_too(runner, monkeypatch, variables, start):
    monkeypatch.setenv(URL, variables[URL])
    result = runner.invoke(app, ["--postgres", "stats"])
    refused(result, start)
    assert "s3cret-pw" not in result.output


def test_a_bad_url_is_masked_in_the_library_s_error_too():
    with pytest.raises(SettingsError) as refusal:
        resolve_env({"MAILBOX_DATABASE_URL": "postgresql://me:s3cret-pw@host:port/db"})
    assert "s3cret-pw" not in str(refusal.value)
    assert "me:***@host" in str(refusal.value)


def test_a_service_with_a_bad_pool_size_is_refused_with_a_settings_error():
    with pytest.raises(SettingsError, match="POSTGRES_POOL_SIZE"):
        MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_POOL_SIZE": "abc"})


# ---------------------------------------------------------------------- POSTGRES_* as documented


def test_postgres_host_port_and_user_are_honoured_without_a_database_name(monkeypatch):
    monkeypatch.setenv("POSTGRES_HOST", "db.internal")
    monkeypatch.setenv("POSTGRES_PORT", "6543")
    monkeypatch.setenv("POSTGRES_USER", "mailbox")
    env = cli.postgres_env()
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_USER"]) == ("db.internal", "6543", "mailbox")
    assert env["POSTGRES_DBNAME"] == "run_mailbox"


def test_postgres_settings_reach_the_connection_the_command_line_tries(runner, monkeypatch):
    monkeypatch.setenv("POSTGRES_PORT", "1")
    monkeypatch.setenv("POSTGRES_USER", "someone")
    refused(runner.invoke(app, ["--postgres", "stats"]), "cannot reach postgres someone@127.0.0.1:1/run_mailbox")


def test_a_postgres_module_without_a_database_name_uses_the_documented_default(monkeypatch):
    env = resolve_env({"PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_HOST": "db.internal"})
    assert (env["POSTGRES_HOST"], env["POSTGRES_DBNAME"]) == ("db.internal", "run_mailbox")


def test_a_rebuild_the_writers_outpace_is_one_line_and_exit_2(runner, tmp_path, monkeypatch):
    """``RebuildFailed`` (a rebuild that could not overtake the writers) is an expected failure, not a crash."""
    path = tmp_path / "mailbox.db"
    service = MailboxService(env={"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": str(path)})
    service.submit("thread-1", "run-1", dispatch_id="d1", now=1_000)
    service.close()

    def outpaced(store, *args, **kwargs):
        raise RebuildFailed(store.view.name, 5)

    monkeypatch.setattr(host_module, "rebuild", outpaced)
    result = runner.invoke(app, ["--db", str(path), "rebuild", "run_status"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.stdout.strip() == ""  # the progress bar, gone
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: view 'run_status': the rebuild could not overtake"), line
    assert "nothing was swapped in" in line
