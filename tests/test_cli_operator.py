"""The operator commands of the command line (redrive, cancel, interrupt, decide), ``--json`` on every
read command, ISO-8601 times and ``--version``: typer's CliRunner against SQLite and real Postgres."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from run_mailbox import MailboxService, ToolTicket, __version__
from run_mailbox.cli import render
from run_mailbox.cli.main import app
from run_mailbox.cli.operator_commands import default_decision_id
from run_mailbox.domain.ids import redrive_run_id
from run_mailbox.infrastructure.settings import SQLITE

STORE_VARIABLES = ("PERSISTENCE_MODULE", "MAILBOX_DATABASE_URL", "POSTGRES_DBNAME", "SQLITE_DBNAME", "POSTGRES_SCHEMA")
ISO_WITH_HINT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \((?:\d+ (?:s|min|h|d) ago|just now)\)")


@pytest.fixture(autouse=True)
def no_store_in_environment(monkeypatch):
    for name in STORE_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"COLUMNS": "200"})  # wide enough that rich folds no time


def fill(service: MailboxService) -> None:
    """Three dead letters (two threads, two agents, two reasons), a queued run, a claimed one, and a
    run waiting for two tool-call decisions."""
    for thread, run, dispatch, agent, how in (
        ("t1", "r1", "d1", "bot", "dead_letter"),
        ("t1", "r2", "d2", "bot", "nack"),
        ("t2", "r3", "d3", "other", "dead_letter"),
    ):
        service.submit(thread, run, dispatch_id=dispatch, agent_id=agent, max_attempts=1)
        claimed = service.claim_dispatch(dispatch, consumer_id="w")
        if how == "nack":
            service.nack(dispatch, claim_token=claimed.claim_token, error="timeout")
        else:
            service.dead_letter(dispatch, claim_token=claimed.claim_token, error="bad input")
    service.submit("t3", "r4", dispatch_id="q4")
    service.submit("t4", "r5", dispatch_id="c5")
    service.claim("t4", consumer_id="w")
    service.submit("t5", "r6", dispatch_id="p6")
    claimed = service.claim("t5", consumer_id="w")
    service.record_start("p6", claim_token=claimed.claim_token)
    tickets = [ToolTicket(tool_call_id=c, tool_name="shell", arguments={"cmd": c}) for c in ("c1", "c2")]
    service.suspend("p6", claim_token=claimed.claim_token, tickets=tickets)


@pytest.fixture
def db(tmp_path) -> list[str]:
    """The global options of a SQLite log holding ``fill``'s runs."""
    path = tmp_path / "ops.db"
    service = MailboxService(env={"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": str(path)})
    fill(service)
    service.close()
    return ["--db", str(path)]


@pytest.fixture
def pg(postgres_env, monkeypatch) -> list[str]:
    """The global options of a Postgres log (a private schema) holding ``fill``'s runs."""
    service = MailboxService(env=postgres_env)
    fill(service)
    service.close()
    monkeypatch.setenv("MAILBOX_DATABASE_URL", postgres_env["MAILBOX_DATABASE_URL"])
    monkeypatch.setenv("POSTGRES_SCHEMA", postgres_env["POSTGRES_SCHEMA"])
    return ["--postgres"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request) -> list[str]:
    return request.getfixturevalue("db" if request.param == "sqlite" else "pg")


def run(runner: CliRunner, store: list[str], *args: str, code: int = 0):
    result = runner.invoke(app, [*store, *args])
    assert result.exit_code == code, result.output
    return result


def document(runner: CliRunner, store: list[str], *args: str, code: int = 0):
    """The one JSON document a command printed on stdout."""
    return json.loads(run(runner, store, *args, "--json", code=code).stdout)


def one_error_line(result) -> str:
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------------- redrive


def test_redrive_one_dead_letter_then_again_is_refused_in_one_line(runner, store):
    out = run(runner, store, "redrive", "d1").stdout
    assert f"redrove dispatch d1 (thread t1, agent bot, permanent_failure) as run {redrive_run_id('d1')}" in out
    again = runner.invoke(app, [*store, "redrive", "d1"])
    assert one_error_line(again).startswith("error: already redriven: dispatch 'd1' is redriven by run")
    thread = document(runner, store, "thread", "t1")
    redriven = [r for r in thread["runs"] if r["redrive_of"] == "d1"]
    assert [r["run_id"] for r in redriven] == [redrive_run_id("d1")]


def test_redrive_json_names_the_new_run_and_dispatch(runner, store):
    result = document(runner, store, "redrive", "d3", "--priority", "5")
    assert result["run_id"] == redrive_run_id("d3")
    assert result["dead_letter"] == {
        "dispatch_id": "d3",
        "thread_id": "t2",
        "run_id": "r3",
        "agent_id": "other",
        "reason": "permanent_failure",
        "error": "bad input",
        "attempt_count": 0,
        "max_attempts": 1,
        "priority": 128,
        "dead_lettered_at": result["dead_letter"]["dead_lettered_at"],
        "redriven_by": None,
    }
    assert isinstance(result["dead_letter"]["dead_lettered_at"], int)
    assert (result["dispatch"]["status"], result["dispatch"]["priority"]) == ("queued", 5)


def test_redrive_all_dry_run_lists_and_changes_nothing(runner, store):
    before = run(runner, store, "export").stdout
    listed = document(runner, store, "redrive", "--all", "--dry-run")
    assert listed["dry_run"] is True and listed["more"] is False
    assert [e["dispatch_id"] for e in listed["matching"]] == ["d1", "d2", "d3"]
    assert listed["filters"]["until"] is not None  # --until defaults to the command's start
    human = run(runner, store, "redrive", "--all", "--dry-run", "--agent", "bot").stdout
    assert "dry run: 2 dead letters match; nothing was changed" in human
    assert ISO_WITH_HINT.search(human), human
    assert run(runner, store, "export").stdout == before


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], ["d1", "d2", "d3"]),
        (["--thread", "t1"], ["d1", "d2"]),
        (["--agent", "other"], ["d3"]),
        (["--reason", "attempts_exhausted"], ["d2"]),
        (["--since", "2h", "--until", "2999-01-01T00:00:00Z"], ["d1", "d2", "d3"]),
        (["--until", "2000-01-01T00:00:00+01:00"], []),
    ],
)
def test_redrive_all_with_filters_redrives_each_match_once(runner, store, options, expected):
    result = document(runner, store, "redrive", "--all", *options, "--batch", "1")
    assert [r["dead_letter"]["dispatch_id"] for r in result["redriven"]] == expected
    assert result["refused"] == []
    again = document(runner, store, "redrive", "--all", *options)
    assert again["redriven"] == []
    everything = document(runner, store, "redrive", "--all", "--dry-run")["matching"]
    assert [e["dispatch_id"] for e in everything] == [d for d in ("d1", "d2", "d3") if d not in expected]


def test_redrive_all_prints_progress_and_a_summary(runner, db):
    result = run(runner, db, "redrive", "--all", "--batch", "2")
    assert "batch 1: redrove 2, refused 0" in result.stderr and "batch 2: redrove 1, refused 0" in result.stderr
    assert "redrove 3 dead letters in 2 transactions, refused 0" in result.stdout


def test_redrive_all_lists_what_it_refused_and_exits_1(runner, db):
    service = MailboxService(env={"PERSISTENCE_MODULE": SQLITE, "SQLITE_DBNAME": db[1]})
    service.submit("t9", "r9", dispatch_id="k1", dedupe_key="k", max_attempts=1)
    claimed = service.claim_dispatch("k1", consumer_id="w")
    service.dead_letter("k1", claim_token=claimed.claim_token, error="bad")
    service.submit("t9", "r10", dispatch_id="k2", dedupe_key="k")  # holds the key now
    service.close()
    result = run(runner, db, "redrive", "--all", code=1)
    assert "refused k1: DedupeKeyConflict" in result.stdout
    assert "redrove 3 dead letters in 1 transactions, refused 1" in result.stdout
    refused = document(runner, db, "redrive", "--all", code=1)["refused"]
    assert [r["dispatch_id"] for r in refused] == ["k1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["redrive"], "name one DISPATCH_ID or pass --all"),
        (["redrive", "d1", "--all"], "name one DISPATCH_ID or pass --all"),
        (["redrive", "d1", "--thread", "t1"], "go with --all"),
        (["redrive", "--all", "--since", "yesterday"], "is not a time"),
        (["redrive", "--all", "--reason", "tired"], "invalid reason='tired'"),
        (["redrive", "q4"], "error: cannot redrive dispatch q4: it is queued, must be dead_letter"),
        (["redrive", "nope"], "error: dispatch not found: 'nope'"),
    ],
)
def test_redrive_refusals_are_one_line(runner, db, args, message):
    result = runner.invoke(app, [*db, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------------- cancel, interrupt, decide


def test_cancel_and_interrupt(runner, store):
    assert "cancelled dispatch q4: run r4 on thread t3 ended" in run(runner, store, "cancel", "q4").stdout
    refused = runner.invoke(app, [*store, "cancel", "c5"])
    assert one_error_line(refused).startswith("error: cannot cancel dispatch c5: it is claimed")
    result = document(runner, store, "interrupt", "t4")
    assert result["new_dispatch_epoch"] == 1 and result["active_dispatch"]["dispatch_id"] == "c5"
    human = run(runner, store, "interrupt", "t3").stdout
    assert "thread t3: dispatch epoch now 1" in human and "nothing was queued or claimed" in human
    assert document(runner, store, "stats")["dispatches"]["cancelled"] == 1


def test_decide_approves_and_denies_and_a_second_identical_call_changes_nothing(runner, store):
    pending = document(runner, store, "pending")["pending"]
    assert [(p["run_id"], p["tool_call_id"]) for p in pending] == [("r6", "c1"), ("r6", "c2")]
    assert isinstance(pending[0]["requested_at"], int)
    first = run(runner, store, "decide", "r6", "c1", "--approve", "--reason", "fine").stdout
    assert "approved tool call c1 of run r6" in first and "still waiting for: c2" in first
    assert "approved tool call c1" in run(runner, store, "decide", "r6", "c1", "--approve", "--reason", "fine").stdout
    conflict = runner.invoke(app, [*store, "decide", "r6", "c1", "--deny"])
    assert "already delivered with different content" in one_error_line(conflict)
    outcome = document(runner, store, "decide", "r6", "c2", "--deny", "--decision-id", "human-7")
    assert (outcome["decision_id"], outcome["approved"], outcome["pending_tool_calls"]) == ("human-7", False, [])
    assert outcome["resume_dispatch_id"] is not None
    assert document(runner, store, "pending")["pending"] == []
    assert outcome["delivery_path"] == "remote_live"


def test_decide_needs_exactly_one_verdict(runner, db):
    for args in (["decide", "r6", "c1"], ["decide", "r6", "c1", "--approve", "--deny"]):
        result = runner.invoke(app, [*db, *args])
        assert result.exit_code == 2 and "give one of --approve or --deny" in result.output


def test_the_default_decision_id_is_stable_per_tool_call():
    assert default_decision_id("r", "c") == default_decision_id("r", "c") != default_decision_id("r", "c2")
    assert len(default_decision_id("r" * 256, "c" * 256)) <= 256


# ---------------------------------------------------------------------- --json on every read command


def test_every_read_command_prints_one_json_document(runner, store):
    stats = document(runner, store, "stats")
    assert stats["dispatches"]["dead_letter"] == 3 and stats["total"] == 6
    thread = document(runner, store, "thread", "t1")
    assert [d["dispatch_id"] for d in thread["dispatches"]] == ["d1", "d2"] and thread["epoch"] == 0
    assert isinstance(thread["dispatches"][0]["updated_at"], int)
    queue = document(runner, store, "queue")
    assert [r["dispatch_id"] for r in queue["ready"]] == ["q4"]
    assert [r["dispatch_id"] for r in queue["claimed"]] == ["c5"]
    assert [r["dispatch_id"] for r in queue["dead_letters"]] == ["d1", "d2", "d3"]
    assert isinstance(queue["dead_letters"][0]["completed_at"], int)
    assert len(document(runner, store, "pending", "--thread", "t5")["pending"]) == 2
    verified = document(runner, store, "verify")
    assert verified["ok"] is True and verified["invariant_problems"] == []
    assert all(v["identical"] for v in verified["views"])
    rebuilt = document(runner, store, "rebuild", "--all")
    assert {r["view"] for r in rebuilt["rebuilt"]} == {v["view"] for v in verified["views"]}
    status = document(runner, store, "status")
    assert status["dispatches"]["dead_letter"] == 3 and status["runs"]["done"] == 3
    assert all(v["lag"] == 0 and v["position"] == status["log_end"] for v in status["views"])
    exported = [json.loads(line) for line in run(runner, store, "export").stdout.splitlines()]
    assert exported and all("kind" in e for e in exported)


def test_status_shows_how_far_each_view_lags(runner, db):
    status = document(runner, db, "status")
    assert status["log_end"] > 0 and all(v["lag"] == status["log_end"] for v in status["views"])
    assert status["runs"]["done"] == 0  # counted by the run_status view, which has not run yet
    run(runner, db, "queue")  # catches the dispatch_queue view up
    lags = {v["view"]: v["lag"] for v in document(runner, db, "status")["views"]}
    assert lags["dispatch_queue"] == 0 and lags["run_status"] == status["log_end"]
    human = run(runner, db, "status").stdout
    assert "dispatch_queue" in human and "dead_letter" in human


def test_times_print_as_iso_8601_with_a_relative_hint(runner, db):
    assert ISO_WITH_HINT.search(run(runner, db, "queue").stdout)
    assert ISO_WITH_HINT.search(run(runner, db, "pending").stdout)


def test_version(runner):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"mailbox (run-mailbox) {__version__}\n"


def test_version_needs_no_store(runner, tmp_path: Path):
    result = runner.invoke(app, ["--db", str(tmp_path / "nothing.db"), "--version"])
    assert result.exit_code == 0 and not (tmp_path / "nothing.db").exists()


# ---------------------------------------------------------------------- how times read


def test_iso_and_relative_times():
    ms = 1_796_166_904_123  # 2026-12-01T23:15:04.123Z
    assert render.iso(ms) == "2026-12-01T23:15:04.123Z"
    assert render.when(ms, ms + 3 * 60_000 + 5_000) == "2026-12-01T23:15:04.123Z (3 min ago)"
    assert render.relative(ms, ms + 999) == "just now"
    assert render.relative(ms + 20_000, ms) == "in 20 s"
    assert render.relative(ms, ms + 2 * 86_400_000) == "2 d ago"
    assert render.when(None, ms) == ""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-01T23:15:04.123Z", 1_796_166_904_123),
        ("2026-12-01T23:15:04.123", 1_796_166_904_123),  # no offset: UTC
        ("2026-12-02T00:15:04.123+01:00", 1_796_166_904_123),
        ("2026-12-01", 1_796_083_200_000),
        ("1796166904123", 1_796_166_904_123),
        ("90s", 1_000_000 - 90_000),
        ("15m", 1_000_000 - 900_000),
        ("2h", 0),  # never before the epoch
    ],
)
def test_times_given_on_the_command_line(text, expected):
    assert render.parse_time(text, 1_000_000, "--since") == expected


def test_a_time_that_is_not_one_is_refused():
    with pytest.raises(typer.BadParameter, match="is not a time"):
        render.parse_time("last tuesday", 0, "--since")
