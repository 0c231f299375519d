"""Concurrent ``claim_next`` of one service spread over the queue before they write
(infrastructure/claim_reservations): a claim skips the threads another in-flight claim holds and
reads past them, and gives back what it held however its attempt ends."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from run_mailbox import MailboxService
from run_mailbox.infrastructure.claim_reservations import ClaimReservations


def queue_threads(service: MailboxService, count: int) -> None:
    for n in range(count):
        service.submit(f"t{n}", f"r{n}", priority=n)  # t0 is the best


def held(service: MailboxService) -> int:
    return service.runner.reservations.held_by_others(object())


def test_a_claim_takes_the_best_threads_no_concurrent_claim_holds(service):
    queue_threads(service, 8)
    elsewhere = object()
    service.runner.reservations.take(elsewhere, ["t0", "t1", "t2"])
    claimed = service.claim_next(consumer_id="w", limit=3)
    assert [d.thread_id for d in claimed] == ["t3", "t4", "t5"]
    assert held(service) == 3  # only the other claim's: this one gave its own back
    service.runner.reservations.give_back(elsewhere, ["t0", "t1", "t2"])
    assert [d.thread_id for d in service.claim_next(consumer_id="w", limit=3)] == ["t0", "t1", "t2"]
    assert held(service) == 0


def test_a_claim_reads_past_a_window_of_held_threads(service):
    queue_threads(service, 20)
    service.runner.reservations.take(object(), [f"t{n}" for n in range(12)])
    claimed = service.claim_next(consumer_id="w", limit=2)
    assert [d.thread_id for d in claimed] == ["t12", "t13"]


def test_a_claim_finds_nothing_when_every_ready_thread_is_held_and_holds_nothing_after(service):
    queue_threads(service, 3)
    service.runner.reservations.take(object(), ["t0", "t1", "t2"])
    assert service.claim_next(consumer_id="w", limit=2) == []
    assert held(service) == 3


def test_a_claim_that_fails_gives_back_what_it_held(service):
    queue_threads(service, 4)
    save = service.runner._save

    def broken(*args, **kwargs):
        raise RuntimeError("the store went away")

    service.runner._save = broken  # the claim has read and reserved its threads, then its write fails
    with pytest.raises(RuntimeError, match="the store went away"):
        service.claim_next(consumer_id="w", limit=2)
    service.runner._save = save
    assert held(service) == 0
    assert [d.thread_id for d in service.claim_next(consumer_id="w", limit=2)] == ["t0", "t1"]


@settings(max_examples=150, deadline=None)
@given(
    priorities=st.lists(st.integers(0, 3), min_size=1, max_size=14),
    held_elsewhere=st.sets(st.integers(0, 13)),
    limit=st.integers(1, 6),
)
def test_claim_next_takes_the_best_threads_nobody_else_holds_in_claim_order_and_keeps_nothing(
    priorities, held_elsewhere, limit
):
    """Property: whatever threads a concurrent claim holds, ``claim_next(limit)`` returns the best
    ``limit`` of the others in claim order (priority, then creation, then dispatch id), never a held
    one, and afterwards only the other claim's reservations remain."""
    service = MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=lambda: 1_000)
    for n, priority in enumerate(priorities):
        service.submit(f"t{n}", f"r{n}", priority=priority, dispatch_id=f"d{n:02d}")
    others = sorted(h for h in held_elsewhere if h < len(priorities))
    service.runner.reservations.take(object(), [f"t{n}" for n in others])
    claimed = service.claim_next(consumer_id="w", limit=limit)
    free = sorted((p, f"d{n:02d}", f"t{n}") for n, p in enumerate(priorities) if n not in others)
    assert [d.thread_id for d in claimed] == [t for _, _, t in free[:limit]]
    assert held(service) == len(others)


def test_reservations_belong_to_one_holder_at_a_time():
    reservations = ClaimReservations()
    first, second = object(), object()
    assert reservations.take(first, ["a", "b"]) == ["a", "b"]
    assert reservations.take(second, ["b", "c", "a"]) == ["c"]
    assert reservations.take(first, ["a", "c"]) == ["a"]  # its own again, not the other's
    assert (reservations.held_by_others(first), reservations.held_by_others(second)) == (1, 2)
    reservations.give_back(second, ["a", "b", "c"])  # only ``c`` was its own
    assert reservations.take(second, ["a", "b", "c"]) == ["c"]
    reservations.give_back(first, ["a", "b"])
    assert reservations.take(second, ["a", "b"]) == ["a", "b"]


@pytest.mark.postgres
def test_eight_threads_of_one_service_claim_each_of_600_dispatches_exactly_once(postgres_env):
    service = MailboxService(env={**postgres_env, "POSTGRES_POOL_SIZE": "9"}, clock=lambda: 2_000)
    service.submit_many([{"thread_id": f"thread-{i % 200}", "run_id": f"run-{i}"} for i in range(600)])
    claims: list[str] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            while True:
                got = service.claim_next(consumer_id=f"w{n}", limit=5, start=True)
                if not got and service.count_by_status()["queued"] == 0:
                    return
                if not got:
                    continue  # the rest is held or claimed by the others
                with lock:
                    claims.extend(d.dispatch_id for d in got)
                result = service.ack_many([{"dispatch_id": d.dispatch_id, "claim_token": d.claim_token} for d in got])
                assert not result.refused, result.refused
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert failures == []
        assert len(claims) == len(set(claims)) == 600
        assert service.count_by_status()["acked"] == 600
        assert held(service) == 0
    finally:
        service.close()
