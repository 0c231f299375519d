"""A page of dead letters reads the dead letters, not the whole dispatch index (migration 9 on Postgres;
SQLite finds them through an index it had): ``dead_letters`` and every ``redrive_many`` page through them."""

from __future__ import annotations

import sqlite3

import pytest

from run_mailbox import MailboxService
from run_mailbox.infrastructure.persistence.rows import DeadLetterPage
from tests.helpers import buffers_read, submit_threads


def dead_letter(service: MailboxService, threads: list[str]) -> None:
    for thread in threads:
        claimed = service.claim(thread, consumer_id="w")
        assert claimed is not None
        service.dead_letter(claimed.dispatch_id, claim_token=claimed.claim_token or "", error="poison")


def page_blocks(service: MailboxService) -> int:
    where, params = DeadLetterPage(limit=50).where("%s")
    table = service.recorder.sql.index_table.as_string(None)  # type: ignore[attr-defined]
    return buffers_read(service, f"SELECT * FROM {table} WHERE {where} {DeadLetterPage.ORDER} LIMIT 50", params)


@pytest.mark.postgres
def test_a_dead_letter_page_reads_as_many_pages_with_3000_dispatches_as_with_300(postgres_env, clock):
    service = MailboxService(env=postgres_env, clock=clock)
    submit_threads(service, 0, 300)
    dead_letter(service, ["t0", "t1", "t2"])
    few = page_blocks(service)
    submit_threads(service, 300, 2700)
    many = page_blocks(service)
    assert many <= few + 2, (few, many)
    assert sorted(d.thread_id for d in service.dead_letters()) == ["t0", "t1", "t2"]
    service.close()


def test_a_dead_letter_page_on_sqlite_searches_an_index_by_status(tmp_path, clock):
    path = tmp_path / "mailbox.db"
    service = MailboxService(
        env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}, clock=clock
    )
    submit_threads(service, 0, 50)
    service.close()
    where, params = DeadLetterPage(limit=50).where("?")
    with sqlite3.connect(path) as conn:
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN SELECT * FROM mailboxservice_dispatch_index WHERE {where} {DeadLetterPage.ORDER}",
            params,
        ).fetchall()
    assert plan[0][3].startswith("SEARCH mailboxservice_dispatch_index USING INDEX"), plan
