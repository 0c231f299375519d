"""Races on real Postgres: several service instances (as if several processes) share one store.

Every racer starts at a barrier; a loser must get an empty answer or a MailboxError, never a
database or library exception, and the store must never hold two claims on one thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any
from uuid import UUID

import pytest

from run_mailbox.domain import DispatchStatus, MailboxError
from run_mailbox.domain.ids import mailbox_aggregate_id
from run_mailbox.infrastructure.service import MailboxService

pytestmark = pytest.mark.postgres

RACERS = 8
T = "thread-1"


@pytest.fixture
def services(postgres_env, clock) -> Iterator[list[MailboxService]]:
    apps = [MailboxService(env=postgres_env, clock=clock) for _ in range(RACERS)]
    yield apps
    for app in apps:
        app.close()


def race(calls: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Runs the calls at once from a barrier; returns ("ok", result) or ("error", exception)."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[tuple[str, Any]] = [("missing", None)] * len(calls)

    def worker(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = ("ok", calls[i]())
        except Exception as exc:  # the test inspects every outcome
            outcomes[i] = ("error", exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    return outcomes


def winners(outcomes: list[tuple[str, Any]]) -> list[Any]:
    """The non-empty results; every other outcome must be None or a MailboxError."""
    for status, value in outcomes:
        assert status in ("ok", "error")
        if status == "error":
            assert isinstance(value, MailboxError), f"unexpected {type(value).__name__}: {value}"
    return [value for status, value in outcomes if status == "ok" and value is not None]


def kinds(service: MailboxService) -> list[str]:
    return [e.kind for e in service.canonical_events(limit=10_000)]


def test_racing_thread_claims_have_exactly_one_winner(services):
    """46."""
    services[0].submit(T, "r1", dispatch_id="d1", now=500)
    outcomes = race([lambda s=s, i=i: s.claim(T, consumer_id=f"c{i}", now=1_000) for i, s in enumerate(services)])
    won = winners(outcomes)
    assert len(won) == 1
    stored = services[0].get_dispatch("d1")
    assert stored.status is DispatchStatus.CLAIMED
    assert (stored.claim_token, stored.claimed_by) == (won[0].claim_token, won[0].claimed_by)
    assert kinds(services[0]).count("DispatchClaimed") == 1


class PausingService(MailboxService):
    """The real service, with one pause point: right after it first loads ``pause_after``.

    It lets a test put a rival's commit between two reads of one command, deterministically.
    Nothing is faked; the reads and writes go to the real Postgres store.
    """

    name = MailboxService.name  # the same tables as the other instances

    def __init__(self, *args: Any, pause_after: UUID, **kwargs: Any) -> None:
        self.pause_after = pause_after
        self.paused, self.resume = threading.Event(), threading.Event()
        super().__init__(*args, cache_size=0, **kwargs)
        real_read = self.recorder.read_aggregates  # how a command reads aggregates from Postgres

        def read_aggregates(aggregate_ids: list[UUID], **kwargs: Any) -> Any:
            found = real_read(aggregate_ids, **kwargs)
            if self.pause_after in aggregate_ids and not self.paused.is_set():
                self.paused.set()
                self.resume.wait(timeout=30)
            return found

        self.recorder.read_aggregates = read_aggregates  # type: ignore[attr-defined]


def test_a_thread_claim_that_loses_between_its_reads_returns_none(postgres_env, clock):
    """46: the loser of a claim race gets an empty result, even when the rival commits between
    the loser's read of the mailbox and its read of the dispatch (the stale read is retried)."""
    winner = MailboxService(env=postgres_env, clock=clock)
    loser = PausingService(env=postgres_env, clock=clock, pause_after=mailbox_aggregate_id(T))
    try:
        winner.submit(T, "r1", dispatch_id="d1", now=500)
        outcome: list[tuple[str, Any]] = []

        def lose() -> None:
            try:
                outcome.append(("ok", loser.claim(T, consumer_id="loser", now=1_000)))
            except Exception as exc:  # the test inspects the outcome
                outcome.append(("error", exc))

        racer = threading.Thread(target=lose)
        racer.start()
        assert loser.paused.wait(timeout=30)  # it has read the mailbox: d1 is queued
        won = winner.claim(T, consumer_id="winner", now=1_000)
        loser.resume.set()
        racer.join(timeout=30)
        assert won is not None and won.dispatch_id == "d1"
        assert outcome == [("ok", None)], outcome
        assert winner.get_dispatch("d1").claimed_by == "winner"
        assert kinds(winner).count("DispatchClaimed") == 1
    finally:
        loser.resume.set()
        winner.close()
        loser.close()


def test_racing_claims_by_id_of_one_dispatch_have_exactly_one_winner(services):
    """46."""
    services[0].submit(T, "r1", dispatch_id="d1", now=500)
    outcomes = race(
        [lambda s=s, i=i: s.claim_dispatch("d1", consumer_id=f"c{i}", now=1_000) for i, s in enumerate(services)]
    )
    won = winners(outcomes)
    assert len(won) == 1
    stored = services[0].get_dispatch("d1")
    assert (stored.claim_token, stored.claimed_by) == (won[0].claim_token, won[0].claimed_by)
    assert kinds(services[0]).count("DispatchClaimed") == 1


def test_racing_claims_by_id_of_two_dispatches_on_one_thread_have_exactly_one_winner(services):
    """46, Z7."""
    services[0].submit(T, "r1", dispatch_id="d1", now=500)
    services[0].submit(T, "r2", dispatch_id="d2", now=600)
    calls = [
        lambda s=s, i=i: s.claim_dispatch(f"d{i % 2 + 1}", consumer_id=f"c{i}", now=1_000)
        for i, s in enumerate(services)
    ]
    won = winners(race(calls))
    assert len(won) == 1
    claimed = services[0].list_dispatches(T, status=DispatchStatus.CLAIMED)
    assert [d.dispatch_id for d in claimed] == [won[0].dispatch_id]
    assert kinds(services[0]).count("DispatchClaimed") == 1


def test_racing_submits_with_one_idempotency_key_create_one_dispatch(services):
    outcomes = race([lambda s=s: s.submit(T, "r1", idempotency_key="k-submit", now=1_000) for s in services])
    won = winners(outcomes)
    assert len(won) == RACERS, outcomes
    assert len({d.dispatch_id for d in won}) == 1
    listed = services[0].list_dispatches(T)
    assert [d.dispatch_id for d in listed] == [won[0].dispatch_id]
    assert kinds(services[0]).count("RunQueued") == 1


def test_racing_sweeps_over_one_exhausted_lease_return_one_record_in_total(services):
    """77."""
    services[0].submit(T, "r1", dispatch_id="d1", max_attempts=1, now=500)
    services[0].claim(T, consumer_id="c", lease_ms=100, now=1_000)
    outcomes = race([lambda s=s: s.reclaim_expired_leases(now=2_000) for s in services[:2]])
    swept = [record for batch in winners(outcomes) for record in batch]
    assert len(swept) == 1
    assert swept[0].status is DispatchStatus.DEAD_LETTER and swept[0].attempt_count == 1
    assert services[0].get_dispatch("d1") == swept[0]
    assert services[1].reclaim_expired_leases(now=3_000) == []
    assert kinds(services[0]).count("DispatchDeadLettered") == 1


def test_racing_submits_on_one_thread_all_land_and_racing_claims_leave_one_claimed(services):
    """49, 64."""
    submits = race([lambda s=s, i=i: s.submit(T, f"r{i}", dedupe_key=f"dk-{i}") for i, s in enumerate(services[:5])])
    assert len(winners(submits)) == 5
    assert len(services[0].list_dispatches(T, status=DispatchStatus.QUEUED)) == 5
    claims = race([lambda s=s, i=i: s.claim(T, consumer_id=f"c{i}") for i, s in enumerate(services)])
    assert len(winners(claims)) == 1
    assert len(services[0].list_dispatches(T, status=DispatchStatus.CLAIMED)) == 1
    assert services[0].count_by_status()["claimed"] == 1
    assert services[0].get_mailbox(T).claimed is not None


def test_claims_racing_an_interrupt_either_win_before_it_and_become_its_active_dispatch_or_find_nothing(services):
    """50, 51: an interrupt supersedes exactly what was queued when it committed."""
    for i in range(3):
        services[0].submit(T, f"r{i}", dispatch_id=f"d{i}", now=500 + i)
    calls: list[Callable[[], Any]] = [lambda: services[0].interrupt(T, now=1_000)]
    calls += [lambda s=s, i=i: s.claim(T, consumer_id=f"c{i}", now=1_000) for i, s in enumerate(services[1:])]
    outcomes = race(calls)
    claimed = winners(outcomes[1:])
    assert outcomes[0][0] == "ok"
    result = outcomes[0][1]
    records = services[0].list_dispatches(T)
    statuses = sorted(d.status.value for d in records)
    assert len(claimed) <= 1
    assert statuses.count("queued") == 0
    if claimed:
        assert result.active_dispatch is not None
        assert result.active_dispatch.dispatch_id == claimed[0].dispatch_id
        assert statuses == ["claimed", "superseded", "superseded"]
        assert result.superseded_count == 2
    else:
        assert result.active_dispatch is None
        assert statuses == ["superseded"] * 3
