"""Idempotency under concurrent duplicates: eight copies of one keyed command, sent at once from
eight service instances (as if eight processes retried it) sharing one SQLite file or one Postgres
schema, all return the stored result (none is refused) and the log holds its effect once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from run_mailbox.domain import DispatchStatus
from run_mailbox.infrastructure.service import MailboxService
from tests.conftest import backend_env
from tests.test_postgres_concurrency import race

RACERS = 8
T = "thread-1"


@pytest.fixture(params=["sqlite", "postgres"])
def services(request, tmp_path, clock) -> Iterator[list[MailboxService]]:
    env = backend_env(request.param, request, tmp_path)
    apps = [MailboxService(env=env, clock=clock) for _ in range(RACERS)]
    yield apps
    for app in apps:
        app.close()


def kinds(service: MailboxService) -> list[str]:
    return [e.kind for e in service.canonical_events(limit=10_000)]


def test_eight_concurrent_copies_of_a_keyed_ack_all_return_the_stored_result(services):
    first = services[0]
    first.submit(T, "r1", dispatch_id="d1", now=1_000)
    token = first.claim(T, consumer_id="w", now=1_001).claim_token
    first.record_start("d1", claim_token=token, now=1_002)
    length = first.recorder.max_notification_id()

    outcomes = race([lambda s=s: s.ack("d1", claim_token=token, idempotency_key="k-ack", now=1_003) for s in services])

    errors = [value for status, value in outcomes if status != "ok"]
    assert errors == [], [f"{type(e).__name__}: {e}" for e in errors]
    results = [value for _, value in outcomes]
    assert all(result == results[0] for result in results)
    assert results[0].status is DispatchStatus.ACKED
    assert first.get_dispatch("d1") == results[0]
    assert kinds(first).count("DispatchAcked") == 1
    assert kinds(first).count("RunFinished") == 1
    written = first.recorder.max_notification_id() - length
    # One transaction's events: the dispatch acked, the thread's claim released, the run finished.
    assert written == 3
    # After the race, plain commands still work on every instance (no connection was left broken).
    for i, service in enumerate(services):
        service.submit(T, f"r-after-{i}", now=2_000 + i)
    assert first.count_by_status()["queued"] == RACERS


def test_eight_concurrent_copies_of_a_keyed_submit_then_a_keyed_nack_count_once(services):
    first = services[0]
    outcomes = race([lambda s=s: s.submit(T, "r1", idempotency_key="k-submit", now=1_000) for s in services])
    assert [status for status, _ in outcomes] == ["ok"] * RACERS, outcomes
    dispatch_id = outcomes[0][1].dispatch_id
    token = first.claim(T, consumer_id="w", now=1_001).claim_token
    outcomes = race(
        [
            lambda s=s: s.nack(dispatch_id, claim_token=token, error="flaky", idempotency_key="k-nack", now=1_002)
            for s in services
        ]
    )
    assert [status for status, _ in outcomes] == ["ok"] * RACERS, outcomes
    assert len({value for _, value in outcomes}) == 1
    assert first.get_dispatch(dispatch_id).attempt_count == 1
    assert kinds(first).count("RunRescheduled") == 1
