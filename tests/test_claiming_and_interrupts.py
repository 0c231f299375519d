"""Spec B: claiming, ordering, thread exclusivity, epochs, interrupt and supersede (all backends)."""

from __future__ import annotations

import pytest

from run_mailbox.domain import DispatchStatus, DispatchSuperseded, RunStatus

T = "thread-1"


def kinds(service) -> list[str]:
    return [e.kind for e in service.canonical_events(limit=10_000)]


def claim_order(service, thread: str = T, now: int = 100_000) -> list[str]:
    """Claims and acks the thread's dispatches one at a time; returns the claimed ids."""
    order = []
    while (claimed := service.claim(thread, consumer_id="c", now=now)) is not None:
        order.append(claimed.dispatch_id)
        service.ack(claimed.dispatch_id, claim_token=claimed.claim_token, now=now)
    return order


# ------------------------------------------------------------------ claiming


def test_a_claim_returns_the_queued_dispatch_claimed_with_a_token_and_the_consumer(service):
    """36."""
    queued = service.submit(T, "run-1", now=900)
    claimed = service.claim(T, consumer_id="consumer-1", lease_ms=30_000, now=1_000)
    assert claimed is not None
    assert claimed.dispatch_id == queued.dispatch_id
    assert claimed.status is DispatchStatus.CLAIMED
    assert claimed.claimed_by == "consumer-1"
    assert claimed.claim_token
    assert claimed.lease_until == 31_000
    assert service.get_dispatch(queued.dispatch_id) == claimed


def test_a_thread_claim_waits_until_available_at_is_reached(service):
    """37."""
    queued = service.submit(T, "run-1", available_at=5_000, now=500)
    assert service.claim(T, consumer_id="c", now=1_000) is None
    assert service.claim(T, consumer_id="c", now=4_999) is None
    claimed = service.claim(T, consumer_id="c", now=5_000)
    assert claimed is not None and claimed.dispatch_id == queued.dispatch_id


def test_a_nacked_dispatch_is_claimable_exactly_at_its_retry_at(service):
    """38."""
    queued = service.submit(T, "run-1", now=500)
    first = service.claim(T, consumer_id="c", now=1_000)
    service.nack(queued.dispatch_id, claim_token=first.claim_token, error="boom", retry_at=2_000, now=1_500)
    assert service.claim(T, consumer_id="c", now=1_999) is None
    again = service.claim(T, consumer_id="c", now=2_000)
    assert again is not None and again.dispatch_id == queued.dispatch_id


def test_a_lower_priority_number_is_claimed_before_an_older_dispatch(service):
    """39."""
    service.submit(T, "run-old", priority=200, dispatch_id="d-200", now=10)
    service.submit(T, "run-new", priority=10, dispatch_id="d-10", now=20)
    claimed = service.claim(T, consumer_id="c", now=100)
    assert claimed is not None and claimed.dispatch_id == "d-10"


def test_equal_priorities_are_claimed_oldest_first(service):
    """40."""
    for i in range(5):
        service.submit(T, f"run-{i}", dispatch_id=f"d-{4 - i}", now=1_000 + i)
    assert claim_order(service) == ["d-4", "d-3", "d-2", "d-1", "d-0"]


def test_claims_follow_priority_when_claimed_and_acked_one_at_a_time(service):
    """40."""
    for prio in (200, 10, 128):
        service.submit(T, f"run-{prio}", priority=prio, dispatch_id=f"d-{prio}")
    assert claim_order(service) == ["d-10", "d-128", "d-200"]


def test_listing_returns_the_claim_order(service):
    """41."""
    service.submit(T, "r1", priority=200, dispatch_id="d-low", now=10)
    service.submit(T, "r2", priority=10, dispatch_id="d-high-newer", now=30)
    service.submit(T, "r3", priority=10, dispatch_id="d-high-older", now=20)
    listed = [d.dispatch_id for d in service.list_dispatches(T)]
    assert listed == ["d-high-older", "d-high-newer", "d-low"]
    assert claim_order(service) == listed


def test_runs_submitted_in_one_millisecond_are_listed_and_claimed_in_the_order_submitted(service):
    """Equal priority and creation time leave the order to the dispatch ids, which one process issues in
    rising order even within one millisecond (ids.new_id)."""
    runs = [service.submit(T, f"r{i}", now=1_000).dispatch_id for i in range(12)]
    assert [d.dispatch_id for d in service.list_dispatches(T)] == runs
    assert claim_order(service) == runs


def test_a_second_thread_claim_returns_none_while_one_is_claimed_then_resumes_after_ack(service):
    """42, 44 (one claim per call, spec Z7)."""
    service.submit(T, "r1", dispatch_id="d-one", now=10)
    service.submit(T, "r2", dispatch_id="d-two", now=20)
    service.submit(T, "r3", dispatch_id="d-three", now=30)
    one = service.claim(T, consumer_id="consumer-1")
    assert one is not None and one.dispatch_id == "d-one"
    assert len(service.list_dispatches(T, status=DispatchStatus.QUEUED)) == 2
    assert service.claim(T, consumer_id="consumer-2") is None
    assert [d.dispatch_id for d in service.list_dispatches(T, status=DispatchStatus.CLAIMED)] == ["d-one"]
    service.ack("d-one", claim_token=one.claim_token)
    two = service.claim(T, consumer_id="consumer-2")
    assert two is not None and two.dispatch_id == "d-two"


def test_claiming_another_dispatch_of_a_busy_thread_by_id_returns_none(service):
    """43."""
    service.submit(T, "r1", dispatch_id="d1")
    service.submit(T, "r2", dispatch_id="d2")
    assert service.claim_dispatch("d1", consumer_id="c1") is not None
    assert service.claim_dispatch("d2", consumer_id="c2") is None
    assert service.get_dispatch("d2").status is DispatchStatus.QUEUED
    assert service.get_dispatch("d2").claim_token is None


def test_dispatches_on_different_threads_are_claimed_independently(service):
    """45."""
    service.submit("thread-a", "ra", dispatch_id="da")
    service.submit("thread-b", "rb", dispatch_id="db")
    service.submit("thread-c", "rc", dispatch_id="dc")
    a = service.claim("thread-a", consumer_id="c1")
    b = service.claim_dispatch("db", consumer_id="c2")
    c = service.claim("thread-c", consumer_id="c3")
    assert a is not None and b is not None and c is not None
    assert {a.dispatch_id, b.dispatch_id, c.dispatch_id} == {"da", "db", "dc"}
    assert len({a.claim_token, b.claim_token, c.claim_token}) == 3


def test_a_claim_by_id_ignores_available_at(service):
    """47."""
    service.submit(T, "r1", dispatch_id="d1", available_at=1_000_000, now=500)
    assert service.claim(T, consumer_id="c", now=1_000) is None
    claimed = service.claim_dispatch("d1", consumer_id="c", now=1_000)
    assert claimed is not None and claimed.status is DispatchStatus.CLAIMED


@pytest.mark.parametrize(("priority", "max_attempts"), [(0, 1), (255, 20), (128, 7)])
def test_a_claim_preserves_the_submitted_priority_and_max_attempts(service, priority, max_attempts):
    """48."""
    service.submit(T, "r1", priority=priority, max_attempts=max_attempts)
    claimed = service.claim(T, consumer_id="consumer-1")
    assert (claimed.priority, claimed.max_attempts, claimed.claimed_by) == (priority, max_attempts, "consumer-1")
    assert claimed.claim_token


# ------------------------------------------------------------------ interrupt and supersede


def test_an_interrupt_supersedes_every_queued_dispatch_and_bumps_the_epoch(service):
    """50, 52."""
    assert service.thread_epoch(T) == 0
    service.submit(T, "r1", dispatch_id="d1", now=10)
    service.submit(T, "r2", dispatch_id="d2", now=20)
    result = service.interrupt(T, now=2_000)
    assert result.new_dispatch_epoch == 1
    assert service.thread_epoch(T) == result.new_dispatch_epoch
    assert result.active_dispatch is None
    assert result.superseded_count == 2
    assert sorted(d.dispatch_id for d in result.superseded) == ["d1", "d2"]
    for record in result.superseded:
        assert record.status is DispatchStatus.SUPERSEDED
        assert record.last_error == "queued dispatch superseded by interrupt"
        assert record.completed_at == 2_000
        assert service.get_dispatch(record.dispatch_id) == record
    assert len(service.list_dispatches(T, status=DispatchStatus.SUPERSEDED)) == 2
    assert service.claim(T, consumer_id="c", now=3_000) is None


def test_an_interrupt_returns_the_claimed_dispatch_as_active_and_leaves_it_claimed(service):
    """51."""
    service.submit(T, "r1", dispatch_id="d1", now=10)
    service.submit(T, "r2", dispatch_id="d2", now=20)
    claimed = service.claim(T, consumer_id="c", now=100)
    result = service.interrupt(T, now=200)
    assert result.active_dispatch is not None
    assert result.active_dispatch.dispatch_id == "d1"
    assert result.active_dispatch.status is DispatchStatus.CLAIMED
    assert result.active_dispatch.claim_token == claimed.claim_token
    assert [d.dispatch_id for d in result.superseded] == ["d2"]
    assert service.get_dispatch("d1").status is DispatchStatus.CLAIMED


def test_a_dispatch_submitted_after_an_interrupt_carries_the_new_epoch_and_is_claimable(service):
    """52, Z3."""
    service.submit(T, "r1", dispatch_id="d1")
    epoch = service.interrupt(T).new_dispatch_epoch
    fresh = service.submit(T, "r2", dispatch_id="d2")
    assert fresh.dispatch_epoch == epoch
    claimed = service.claim(T, consumer_id="c")
    assert claimed is not None and claimed.dispatch_id == "d2"
    assert service.extend_lease("d2", claim_token=claimed.claim_token) is True


def test_the_old_owner_cannot_extend_its_lease_after_an_interrupt(service):
    """54."""
    service.submit(T, "r1", dispatch_id="d1", now=500)
    claimed = service.claim(T, consumer_id="c", now=1_000)
    service.interrupt(T, now=1_500)
    assert service.extend_lease("d1", claim_token=claimed.claim_token, now=1_600) is False
    fenced = service.get_dispatch("d1")
    assert fenced.status is DispatchStatus.SUPERSEDED
    assert (fenced.claim_token, fenced.claimed_by, fenced.lease_until) == (None, None, None)
    assert fenced.last_error == "claimed dispatch superseded during lease renewal"


def test_recording_a_start_after_an_interrupt_is_refused_and_supersedes_the_dispatch(service):
    """55, 60."""
    service.submit(T, "r1", dispatch_id="d1", now=500)
    claimed = service.claim(T, consumer_id="c", now=1_000)
    service.interrupt(T, now=1_500)
    with pytest.raises(DispatchSuperseded):
        service.record_start("d1", claim_token=claimed.claim_token, instance_id="inst-1", now=1_600)
    fenced = service.get_dispatch("d1")
    assert fenced.status is DispatchStatus.SUPERSEDED
    assert fenced.instance_id is None and fenced.run_status is None
    assert fenced.claim_token is None and fenced.lease_until is None
    run = service.get_run("r1")
    assert run.status is RunStatus.DONE and run.started_at is None
    assert run.termination.type == "cancelled" and run.dispatch_id == "d1"


def test_an_ack_after_an_interrupt_is_refused_and_terminalises_the_claim(service):
    """53, 57."""
    service.submit(T, "r1", dispatch_id="d1", now=500)
    claimed = service.claim(T, consumer_id="c", now=1_000)
    service.record_start("d1", claim_token=claimed.claim_token, now=1_100)
    service.interrupt(T, now=1_500)
    with pytest.raises(DispatchSuperseded):
        service.ack("d1", claim_token=claimed.claim_token, now=2_000)
    fenced = service.get_dispatch("d1")
    assert fenced.status is DispatchStatus.SUPERSEDED
    assert (fenced.claim_token, fenced.claimed_by, fenced.lease_until) == (None, None, None)
    assert fenced.completed_at == 2_000
    assert service.get_run("r1").termination.type == "cancelled"


def test_reclaiming_an_expired_lease_after_an_interrupt_supersedes_instead_of_requeueing(service):
    """56."""
    service.submit(T, "r1", dispatch_id="d1", now=500)
    service.claim(T, consumer_id="c", lease_ms=100, now=1_000)
    service.interrupt(T, now=1_050)
    assert service.reclaim_expired_leases(now=2_000) == []
    fenced = service.get_dispatch("d1")
    assert fenced.status is DispatchStatus.SUPERSEDED
    assert fenced.claim_token is None and fenced.lease_until is None
    assert fenced.last_error == "claimed dispatch lease expired after interrupt"
    assert service.claim(T, consumer_id="c", now=2_100) is None


def test_runs_of_superseded_queued_dispatches_end_cancelled_and_keep_their_dispatch_id(service):
    """58."""
    service.submit(T, "r1", dispatch_id="d1")
    service.submit(T, "r2", dispatch_id="d2")
    service.interrupt(T)
    for run_id, dispatch_id in (("r1", "d1"), ("r2", "d2")):
        run = service.get_run(run_id)
        assert run.status is RunStatus.DONE
        assert run.termination.type == "cancelled"
        assert run.dispatch_id == dispatch_id


def test_an_interrupt_records_superseded_events_and_one_interrupted_event_per_claim(service):
    """51, Z10, Z11: a second interrupt does not interrupt the same claim twice."""
    service.submit(T, "r1", dispatch_id="d1")
    service.submit(T, "r2", dispatch_id="d2")
    service.claim(T, consumer_id="c")
    first = service.interrupt(T)
    second = service.interrupt(T)
    assert second.new_dispatch_epoch == first.new_dispatch_epoch + 1
    assert second.active_dispatch is not None and second.active_dispatch.dispatch_id == "d1"
    assert second.superseded == []
    recorded = kinds(service)
    assert recorded.count("RunInterrupted") == 1
    assert recorded.count("RunSuperseded") == 1
    assert service.get_dispatch("d1").status is DispatchStatus.CLAIMED
