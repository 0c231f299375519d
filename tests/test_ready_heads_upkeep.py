"""The ready heads stay cheap to claim from: a claim's second look (threads due behind a delayed head)
reads only such threads whatever the planner knows, and the service vacuums the heads as claims churn
them, without any command waiting for it."""

from __future__ import annotations

import re
import sqlite3
import threading
from typing import Any

import psycopg
import pytest
from psycopg import sql

from run_mailbox import MailboxService
from run_mailbox.domain.commands import AckItem
from run_mailbox.infrastructure.persistence.pg_heads_vacuum import HeadsVacuum
from run_mailbox.infrastructure.persistence.sqlite import ready_threads_sql
from run_mailbox.infrastructure.settings import SettingsError
from tests.helpers import buffers_read, submit_threads


@pytest.mark.postgres
@pytest.mark.parametrize("statement", ["ready_threads", "ready_threads_runs"])
def test_a_claim_reads_as_many_head_pages_with_3000_queued_threads_as_with_300_and_no_statistics(
    postgres_env, clock, statement
):
    """Without statistics (a new store; autovacuum off or behind) the planner once walked every head
    for the second look, filtering each out: 311 buffers with 3,000 queued threads against 10 with 300
    (530 with the runs joined)."""
    service = MailboxService(env={**postgres_env, "MAILBOX_VACUUM_HEADS_EVERY": "0"}, clock=clock)
    submit_threads(service, 0, 300)
    params = {"now": clock.now, "limit": 10}
    few = buffers_read(service, getattr(service.recorder.sql, statement), params)
    submit_threads(service, 300, 2700)
    many = buffers_read(service, getattr(service.recorder.sql, statement), params)
    assert many <= few + 5, (few, many)
    service.close()


@pytest.mark.parametrize("runs", [False, True])
def test_the_claims_read_of_the_heads_on_sqlite_goes_through_an_index_for_each_look(tmp_path, clock, runs):
    path = tmp_path / "mailbox.db"
    env = {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}
    service = MailboxService(env=env, clock=clock)
    submit_threads(service, 0, 50)
    service.close()
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN " + ready_threads_sql(runs=runs), [clock.now, 10, clock.now, clock.now, 10]
        ).fetchall()
    heads_scans = [step[3] for step in plan if "mailboxservice_ready_heads" in step[3]]
    assert heads_scans == [
        "SCAN mailboxservice_ready_heads USING INDEX mailboxservice_ready_heads_order",
        "SCAN mailboxservice_ready_heads USING INDEX mailboxservice_ready_heads_due_behind",
    ]


def vacuum_count(env: dict[str, str]) -> int:
    with psycopg.connect(env["MAILBOX_DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute(
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE schemaname = %s AND relname = %s",
            [env["POSTGRES_SCHEMA"], "mailboxservice_ready_heads"],
        ).fetchone()
    assert row is not None
    return int(row[0])


def churn(service: MailboxService, threads: int) -> None:
    """``threads`` runs submitted, claimed and acked, ten at a time."""
    submit_threads(service, 0, threads)
    while batch := service.claim_next(consumer_id="w", limit=10, start=True):
        service.ack_many([AckItem(d.dispatch_id, claim_token=d.claim_token or "") for d in batch])


@pytest.mark.postgres
def test_the_service_vacuums_the_ready_heads_as_claims_churn_them(postgres_env, clock):
    service = MailboxService(env={**postgres_env, "MAILBOX_VACUUM_HEADS_EVERY": "100"}, clock=clock)
    churn(service, 300)  # 300 heads written, 300 deleted
    vacuum: Any = service.recorder.heads_vacuum
    assert vacuum.wait(10)
    assert (vacuum.failures, vacuum.runs >= 1) == (0, True)
    assert vacuum_count(postgres_env) == vacuum.runs
    service.close()


@pytest.mark.postgres
def test_no_vacuum_runs_when_it_is_left_to_autovacuum(postgres_env, clock):
    service = MailboxService(env={**postgres_env, "MAILBOX_VACUUM_HEADS_EVERY": "0"}, clock=clock)
    churn(service, 300)
    assert (service.recorder.heads_vacuum.runs, vacuum_count(postgres_env)) == (0, 0)  # type: ignore[attr-defined]
    service.close()


@pytest.mark.parametrize("value", ["-1", "1.5", "often", str(10**9 + 1), "\u00b2", "\u0661\u0662", "9" * 5000])
def test_a_malformed_vacuum_setting_is_refused_at_start_naming_it(postgres_env, value):
    with pytest.raises(SettingsError, match=re.escape(f"MAILBOX_VACUUM_HEADS_EVERY={value!r}")):
        MailboxService(env={**postgres_env, "MAILBOX_VACUUM_HEADS_EVERY": value})


def test_one_vacuum_runs_at_a_time_and_the_count_carries_over_while_it_runs():
    release, started = threading.Event(), threading.Event()
    calls = []

    def vacuum() -> None:
        calls.append(1)
        started.set()
        release.wait(5)

    heads = HeadsVacuum(vacuum, every=10)
    heads.changed(9)
    assert calls == []
    heads.changed(1)
    assert started.wait(5)
    heads.changed(50)  # due again, but the first still runs
    assert calls == [1]
    release.set()
    assert heads.wait(5)
    heads.changed(1)  # the 50 counted meanwhile make the next one due at once
    assert heads.wait(5)
    assert (len(calls), heads.runs) == (2, 2)


def test_a_failed_vacuum_is_counted_and_logged_and_the_next_one_still_runs(caplog):
    outcomes = [psycopg.OperationalError("the server closed the connection"), None]

    def vacuum() -> None:
        error = outcomes.pop(0)
        if error is not None:
            raise error

    heads = HeadsVacuum(vacuum, every=1)
    heads.changed(1)
    assert heads.wait(5)
    heads.changed(1)
    assert heads.wait(5)
    assert (heads.failures, heads.runs) == (1, 1)
    assert "the vacuum of the ready heads failed" in caplog.text


def test_nothing_is_counted_when_vacuuming_is_off():
    heads = HeadsVacuum(lambda: pytest.fail("no vacuum should run"), every=0)
    heads.changed(10**6)
    assert heads.wait(0) and heads.runs == 0


@pytest.mark.postgres
def test_a_vacuum_never_waits_for_the_table_and_commands_never_wait_for_a_vacuum(postgres_env, clock):
    """Another session holds VACUUM's own lock on the heads (as a running autovacuum would): the
    service's commands go on, and its vacuum steps aside at once instead of waiting."""
    service = MailboxService(env={**postgres_env, "MAILBOX_VACUUM_HEADS_EVERY": "10"}, clock=clock)
    table = sql.Identifier(postgres_env["POSTGRES_SCHEMA"], "mailboxservice_ready_heads")
    with psycopg.connect(postgres_env["MAILBOX_DATABASE_URL"]) as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN SHARE UPDATE EXCLUSIVE MODE").format(table))
        churn(service, 20)
        vacuum: Any = service.recorder.heads_vacuum
        assert vacuum.wait(5)
        assert (vacuum.runs >= 1, vacuum.failures, vacuum_count(postgres_env)) == (True, 0, 0)
        assert service.count_by_status()["acked"] == 20
    service.close()
