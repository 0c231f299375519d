"""The ``mailbox`` command line, run in-process with typer's CliRunner against real stores."""

from __future__ import annotations

import io
import json
from pathlib import Path

import psycopg
import pytest
from rich.console import Console
from typer.testing import CliRunner

from run_mailbox.cli import stores as cli
from run_mailbox.cli.main import app
from run_mailbox.demo.check import expectations, log_counts
from run_mailbox.demo.driver import Driver
from run_mailbox.demo.workers import make_plan
from run_mailbox.infrastructure import queries
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.settings import (
    POSTGRES,
    SQLITE,
    default_sqlite_path,
    env_from_database_url,
    resolve_env,
)

STORE_VARIABLES = ("PERSISTENCE_MODULE", "MAILBOX_DATABASE_URL", "POSTGRES_DBNAME", "SQLITE_DBNAME", "POSTGRES_SCHEMA")


@pytest.fixture(autouse=True)
def no_store_in_environment(monkeypatch):
    """Each test chooses its store itself, whatever the developer's shell exports."""
    for name in STORE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def db(tmp_path) -> Path:
    """A SQLite log holding two runs on thread-1: one acked, one still queued."""
    path = tmp_path / "mailbox.db"
    service = MailboxService(env={"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": str(path)})
    service.submit("thread-1", "run-1", dispatch_id="d1", now=1_000)
    claimed = service.claim("thread-1", consumer_id="w", now=1_001)
    service.record_start("d1", claim_token=claimed.claim_token, now=1_002)
    service.ack("d1", claim_token=claimed.claim_token, now=1_003)
    service.submit("thread-1", "run-2", dispatch_id="d2", priority=7, now=1_004)
    service.close()
    return path


def json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines()]


def summary_counts(output: str) -> dict[str, int]:
    """The demo summary's rows, by name (indentation dropped), with their counts."""
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) >= 4 and cells[1] and cells[2].isdigit():
            rows[cells[1]] = int(cells[2])
    return rows


# ---------------------------------------------------------------------- demo


@pytest.mark.slow
def test_demo_on_a_sqlite_file_finishes_every_run_and_agrees_with_its_log(runner, tmp_path):
    result = runner.invoke(app, ["demo", "--threads", "4", "--workers", "2", "--db", str(tmp_path / "demo.db")])
    assert result.exit_code == 0, result.output
    assert "checked against the log: OK" in result.stdout
    assert "runs submitted" in result.stdout and "events written" in result.stdout
    rows = summary_counts(result.stdout)
    new_rows = ("permissions asked", "approved", "denied", "decisions re-delivered", "runs resumed")
    assert set(new_rows) | {"messages committed"} <= set(rows), rows
    # With seed 7, run-001-0 (first on an uninterrupted thread) asks for two permissions.
    assert rows["permissions asked"] >= 2 and rows["runs resumed"] >= 1
    assert rows["approved"] + rows["denied"] == rows["permissions asked"]
    assert rows["messages committed"] >= rows["runs submitted"]  # every run's user message at least
    # The kept file holds the whole job: every run ended, none is left queued or claimed.
    stats = runner.invoke(app, ["--db", str(tmp_path / "demo.db"), "stats"])
    assert stats.exit_code == 0
    assert "│ queued      │     0 │" in stats.stdout and "│ claimed     │     0 │" in stats.stdout


def test_the_demo_check_notices_a_decision_the_log_does_not_hold():
    """The check is not vacuous: one decision too many in the tally is a mismatch."""
    service = MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    try:
        driver = Driver(service, make_plan(4, 7), workers=2, seed=7)
        assert driver.run(Console(file=io.StringIO()), time_limit=30)
        statuses, log = service.count_by_status(), log_counts(service)
        assert [c for c in expectations(driver.tally, statuses, log) if c[1] != c[2]] == []
        assert driver.tally["decisions"] >= 2 and log["RunSuspended"] >= 1
        driver.tally.add("decisions")
        wrong = [what for what, want, got in expectations(driver.tally, statuses, log) if want != got]
        assert wrong == ["MailboxDecisionReceived = distinct decisions delivered"]
    finally:
        service.close()


def test_demo_refuses_a_store_that_already_holds_events(runner, db):
    result = runner.invoke(app, ["demo", "--threads", "2", "--db", str(db)])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: the demo needs an empty store")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.postgres
def test_demo_on_postgres_runs_in_a_fresh_schema_and_drops_it(runner, postgres_url, monkeypatch):
    monkeypatch.setenv("MAILBOX_DATABASE_URL", postgres_url)
    with psycopg.connect(postgres_url) as conn:
        before = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mailbox_demo_%'")}
    result = runner.invoke(app, ["demo", "--postgres", "--threads", "4", "--workers", "3"])
    assert result.exit_code == 0, result.output
    assert "checked against the log: OK" in result.stdout
    assert "(schema mailbox_demo_" in result.stdout
    with psycopg.connect(postgres_url) as conn:
        after = {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'mailbox_demo_%'")}
    assert after <= before


# ---------------------------------------------------------------------- export


def test_export_writes_every_canonical_event_as_a_json_line_in_log_order(runner, db):
    result = runner.invoke(app, ["--db", str(db), "export"])
    assert result.exit_code == 0, result.output
    events = json_lines(result.stdout)
    kinds = [e["kind"] for e in events]
    assert kinds.count("RunQueued") == 2
    assert {"DispatchClaimed", "RunSubmitted", "DispatchAcked", "RunFinished"} <= set(kinds)
    positions = [e["position"] for e in events]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert all(e["writer_id"] == "mailbox" for e in events)


def test_export_upstream_only_and_after_select_a_suffix_of_the_upstream_kinds(runner, db):
    every = json_lines(runner.invoke(app, ["--db", str(db), "export"]).stdout)
    upstream = json_lines(runner.invoke(app, ["--db", str(db), "export", "--upstream-only"]).stdout)
    assert upstream == [e for e in every if e["upstream"]]
    assert {e["kind"] for e in upstream} == {"RunQueued", "RunSubmitted"}
    middle = every[len(every) // 2]["position"]
    later = json_lines(runner.invoke(app, ["--db", str(db), "export", "--after", str(middle)]).stdout)
    assert later == [e for e in every if e["position"] > middle]


def test_export_pages_through_a_log_longer_than_one_page(runner, db, monkeypatch):
    """Pages that render nothing (mailbox bookkeeping only) must not end the export early."""
    whole = json_lines(runner.invoke(app, ["--db", str(db), "export"]).stdout)
    monkeypatch.setattr(queries, "EXPORT_PAGE", 1)
    paged = json_lines(runner.invoke(app, ["--db", str(db), "export"]).stdout)
    assert paged == whole


def test_export_of_an_empty_log_prints_nothing(runner, tmp_path):
    MailboxService(env={"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": str(tmp_path / "empty.db")}).close()
    result = runner.invoke(app, ["--db", str(tmp_path / "empty.db"), "export"])
    assert result.exit_code == 0
    assert result.stdout == ""


# ---------------------------------------------------------------------- stats and thread


def test_stats_counts_dispatches_by_status(runner, db):
    result = runner.invoke(app, ["--db", str(db), "stats"])
    assert result.exit_code == 0, result.output
    assert "│ acked       │     1 │" in result.stdout
    assert "│ queued      │     1 │" in result.stdout
    assert "│ total       │     2 │" in result.stdout


def test_thread_lists_its_dispatches_in_claim_order(runner, db):
    result = runner.invoke(app, ["--db", str(db), "thread", "thread-1"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[:1] in (["d1"], ["d2"])]
    assert [row[:4] for row in rows] == [["d2", "run-2", "queued", "7"], ["d1", "run-1", "acked", "128"]]


@pytest.mark.parametrize(
    ("thread_id", "message"),
    [
        (" thread-1", "error: invalid thread_id=' thread-1': must not have leading or trailing whitespace"),
        ("no-such-thread", "error: thread not found: 'no-such-thread'"),
    ],
)
def test_thread_with_a_bad_id_exits_2_with_one_line_and_no_traceback(runner, db, thread_id, message):
    result = runner.invoke(app, ["--db", str(db), "thread", thread_id])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.output


def test_db_and_postgres_together_are_refused_in_one_line(runner, db):
    result = runner.invoke(app, ["--db", str(db), "--postgres", "stats"])
    assert result.exit_code == 2
    assert result.stderr == "error: --db and --postgres exclude each other\n"


def test_an_unreachable_postgres_is_one_red_line_not_a_traceback(runner, monkeypatch):
    monkeypatch.setenv("MAILBOX_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/run_mailbox")
    result = runner.invoke(app, ["--postgres", "stats"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot reach postgres postgres@127.0.0.1:1/run_mailbox")
    assert len(result.stderr.splitlines()) == 1


# ---------------------------------------------------------------------- where the log lives


def test_without_flags_or_environment_the_log_is_the_default_sqlite_file(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    env = cli.store_env(cli.Store())
    assert env["PERSISTENCE_MODULE"] == SQLITE
    assert env["SQLITE_DBNAME"] == str(tmp_path / "data" / "run-mailbox" / "mailbox.db")


def test_the_default_sqlite_file_lives_in_the_user_s_data_folder(monkeypatch):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_sqlite_path().parts[-4:] == (".local", "share", "run-mailbox", "mailbox.db")


def test_the_demo_without_flags_or_environment_asks_for_a_temporary_store():
    assert cli.store_env(cli.Store(), default_sqlite=False) is None


def test_persistence_module_in_the_environment_wins_over_the_sqlite_default(monkeypatch, tmp_path):
    monkeypatch.setenv("PERSISTENCE_MODULE", SQLITE)
    monkeypatch.setenv("SQLITE_DBNAME", str(tmp_path / "from-env.db"))
    env = cli.store_env(cli.Store())
    assert env["SQLITE_DBNAME"] == str(tmp_path / "from-env.db")


@pytest.mark.postgres
def test_a_database_url_in_the_environment_selects_postgres(monkeypatch, postgres_url):
    monkeypatch.setenv("MAILBOX_DATABASE_URL", postgres_url)
    env = cli.store_env(cli.Store())
    assert env["PERSISTENCE_MODULE"] == POSTGRES
    assert env["POSTGRES_DBNAME"] == postgres_url.rsplit("/", 1)[1]


def test_postgres_flag_without_settings_uses_the_local_default_database():
    env = cli.postgres_env()
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_DBNAME"]) == ("127.0.0.1", "5432", "run_mailbox")
    assert env["POSTGRES_USER"] == "postgres"


@pytest.mark.postgres
def test_postgres_flag_creates_a_missing_database(postgres_url):
    name = "run_mailbox_cli_test_created"
    admin = postgres_url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
    env = resolve_env(env_from_database_url(postgres_url.rsplit("/", 1)[0] + "/" + name))
    cli.ensure_postgres_database(env)
    with psycopg.connect(admin, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None
        conn.execute(f"DROP DATABASE {name}")
