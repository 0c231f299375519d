"""Leases, expiry, reclaim, nack with backoff and dead letters, on every backend (spec C)."""

import pytest

from run_mailbox.domain import ClaimTokenMismatch, DispatchRecord, DispatchStatus, RunStatus, TerminationReason
from tests.helpers import assert_claim_cleared, store_unchanged

EXHAUSTED = "lease expired; max attempts reached"


def submit_and_claim(service, *, lease_ms=30_000, now=1_000, consumer_id="consumer-a", **submit) -> DispatchRecord:
    """Submits run-1 on thread-1 and claims it, both at ``now``."""
    queued = service.submit("thread-1", "run-1", now=now, **submit)
    claimed = service.claim("thread-1", consumer_id=consumer_id, lease_ms=lease_ms, now=now)
    assert claimed is not None and claimed.dispatch_id == queued.dispatch_id
    return claimed


def claim_again(service, *, now, consumer_id="consumer-b", lease_ms=30_000) -> DispatchRecord:
    claimed = service.claim("thread-1", consumer_id=consumer_id, lease_ms=lease_ms, now=now)
    assert claimed is not None
    return claimed


# ---------------------------------------------------------------- leases


def test_extending_a_lease_counts_from_now_not_from_the_old_lease(service):
    """Spec C71: claim at 1000 for 30000, extend by 60000 at 15000 -> 75000."""
    claimed = submit_and_claim(service, lease_ms=30_000, now=1_000)
    assert service.extend_lease(claimed.dispatch_id, claim_token=claimed.claim_token, lease_ms=60_000, now=15_000)
    record = service.get_dispatch(claimed.dispatch_id)
    assert (record.status, record.lease_until) == (DispatchStatus.CLAIMED, 75_000)
    assert record.claim_token == claimed.claim_token


def test_extending_a_lease_with_a_wrong_token_returns_false_and_changes_nothing(service):
    """Spec C72."""
    claimed = submit_and_claim(service, lease_ms=30_000, now=1_000)
    with store_unchanged(service, claimed.dispatch_id):
        assert not service.extend_lease(claimed.dispatch_id, claim_token="wrong", lease_ms=60_000, now=15_000)
    assert service.get_dispatch(claimed.dispatch_id).lease_until == 31_000


def test_an_ack_with_a_wrong_token_is_refused_and_the_dispatch_stays_claimed(service):
    """Spec C73."""
    claimed = submit_and_claim(service)
    with store_unchanged(service, claimed.dispatch_id), pytest.raises(ClaimTokenMismatch):
        service.ack(claimed.dispatch_id, claim_token="wrong")
    record = service.get_dispatch(claimed.dispatch_id)
    assert (record.status, record.claim_token) == (DispatchStatus.CLAIMED, claimed.claim_token)


@pytest.mark.parametrize(
    "command",
    [
        lambda s, d: s.nack(d, claim_token="wrong", error="boom"),
        lambda s, d: s.dead_letter(d, claim_token="wrong", error="boom"),
        lambda s, d: s.record_start(d, claim_token="wrong"),
    ],
    ids=["nack", "dead_letter", "record_start"],
)
def test_other_owner_commands_with_a_wrong_token_are_refused_and_change_nothing(service, command):
    """Spec C73, A22: only the claim token's holder may finish or start the dispatch."""
    claimed = submit_and_claim(service)
    with store_unchanged(service, claimed.dispatch_id), pytest.raises(ClaimTokenMismatch):
        command(service, claimed.dispatch_id)


def test_an_extended_lease_is_not_reclaimed_at_its_old_expiry(service):
    """Spec C71, C91: renewal keeps the dispatch out of the sweep until the new lease_until passes."""
    claimed = submit_and_claim(service, lease_ms=100, now=1_000)
    assert service.extend_lease(claimed.dispatch_id, claim_token=claimed.claim_token, lease_ms=100, now=1_090)
    assert service.reclaim_expired_leases(now=1_101) == []
    assert service.reclaim_expired_leases(now=1_190) == []
    assert [r.dispatch_id for r in service.reclaim_expired_leases(now=1_191)] == [claimed.dispatch_id]


# ---------------------------------------------------------------- expiry and reclaim


def test_a_lease_is_still_owned_at_lease_until_and_expires_just_after(service):
    """Spec C74: lease 100 at 1000 -> lease_until 1100; nothing at 999 or 1100, one at 1101."""
    claimed = submit_and_claim(service, lease_ms=100, now=1_000)
    assert claimed.lease_until == 1_100
    with store_unchanged(service, claimed.dispatch_id):
        assert service.reclaim_expired_leases(now=999) == []
        assert service.reclaim_expired_leases(now=1_100) == []
    (reclaimed,) = service.reclaim_expired_leases(now=1_101)
    assert (reclaimed.dispatch_id, reclaimed.status) == (claimed.dispatch_id, DispatchStatus.QUEUED)


def test_a_sweep_reclaims_at_most_limit_dispatches_oldest_lease_first(service):
    """Spec C74/C75 with the sweep's batch limit: the rest waits for the next sweep."""
    service.submit("thread-1", "run-1", dispatch_id="d1", now=1_000)
    service.submit("thread-2", "run-2", dispatch_id="d2", now=1_000)
    assert service.claim("thread-2", consumer_id="consumer-a", lease_ms=100, now=1_000) is not None
    assert service.claim("thread-1", consumer_id="consumer-a", lease_ms=200, now=1_000) is not None
    assert [r.dispatch_id for r in service.reclaim_expired_leases(limit=1, now=2_000)] == ["d2"]
    assert [r.dispatch_id for r in service.reclaim_expired_leases(limit=1, now=2_000)] == ["d1"]
    assert service.reclaim_expired_leases(limit=1, now=2_000) == []


def test_a_reclaimed_lease_requeues_the_dispatch_as_its_next_attempt(service):
    """Spec C75."""
    claimed = submit_and_claim(service, lease_ms=100, now=1_000)
    (reclaimed,) = service.reclaim_expired_leases(now=2_000)
    assert (reclaimed.status, reclaimed.attempt_count, reclaimed.available_at) == (DispatchStatus.QUEUED, 1, 2_000)
    assert_claim_cleared(reclaimed)
    assert service.get_dispatch(claimed.dispatch_id) == reclaimed
    assert service.get_run("run-1").status is not RunStatus.DONE


def test_reclaiming_the_last_attempt_dead_letters_it_and_the_run_ends_in_error(service):
    """Spec C76, A16, C93: max 1 with a recorded start."""
    claimed = submit_and_claim(service, lease_ms=100, now=1_000, max_attempts=1)
    service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token, now=1_050)
    (dead,) = service.reclaim_expired_leases(now=2_000)
    assert (dead.status, dead.attempt_count, dead.completed_at) == (DispatchStatus.DEAD_LETTER, 1, 2_000)
    assert dead.last_error == EXHAUSTED
    assert_claim_cleared(dead)
    assert (dead.run_status, dead.instance_id) == (None, None)
    run = service.get_run("run-1")
    assert (run.status, run.termination) == (RunStatus.DONE, TerminationReason.error(EXHAUSTED))
    assert run.dispatch_id == claimed.dispatch_id


def test_an_exhausted_dispatch_is_reclaimed_only_once(service):
    """Spec C77: the second sweep (at 2000 or later) returns nothing and writes nothing."""
    claimed = submit_and_claim(service, lease_ms=100, now=1_000, max_attempts=1)
    (dead,) = service.reclaim_expired_leases(now=2_000)
    assert (dead.status, dead.attempt_count) == (DispatchStatus.DEAD_LETTER, 1)
    with store_unchanged(service, claimed.dispatch_id):
        assert service.reclaim_expired_leases(now=2_000) == []
        assert service.reclaim_expired_leases(now=3_000) == []


def test_a_late_ack_by_the_reclaimed_owner_fails_and_the_new_owner_acks(service):
    """Spec C78."""
    old = submit_and_claim(service, lease_ms=100, now=1_000, consumer_id="consumer-a")
    assert len(service.reclaim_expired_leases(now=1_101)) == 1
    new = claim_again(service, now=1_102, consumer_id="consumer-b")
    assert new.claim_token != old.claim_token
    with store_unchanged(service, old.dispatch_id), pytest.raises(ClaimTokenMismatch):
        service.ack(old.dispatch_id, claim_token=old.claim_token, now=1_103)
    record = service.get_dispatch(old.dispatch_id)
    assert (record.status, record.claimed_by) == (DispatchStatus.CLAIMED, "consumer-b")
    with store_unchanged(service, old.dispatch_id):
        assert not service.extend_lease(old.dispatch_id, claim_token=old.claim_token, now=1_103)
    acked = service.ack(old.dispatch_id, claim_token=new.claim_token, now=1_104)
    assert acked.status is DispatchStatus.ACKED


def test_a_crashed_consumers_dispatch_is_reclaimed_and_completed_by_another(service):
    """Spec C89: reclaimed, re-claimed and acked with attempt_count 1; the run ends naturally."""
    submit_and_claim(service, lease_ms=100, now=1_000)
    service.reclaim_expired_leases(now=1_200)
    again = claim_again(service, now=1_200)
    service.record_start(again.dispatch_id, claim_token=again.claim_token, now=1_250)
    acked = service.ack(again.dispatch_id, claim_token=again.claim_token, now=1_300)
    assert (acked.status, acked.attempt_count, acked.run_status) == (DispatchStatus.ACKED, 1, RunStatus.DONE)
    run = service.get_run("run-1")
    assert (run.status, run.termination) == (RunStatus.DONE, TerminationReason.natural_end())


# ---------------------------------------------------------------- nack and backoff


def test_nack_requeues_at_retry_at_and_clears_the_claim_and_runtime(service):
    """Spec C79."""
    claimed = submit_and_claim(service, now=1_000)
    service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token, now=1_500)
    record = service.nack(
        claimed.dispatch_id, claim_token=claimed.claim_token, error="transient error", retry_at=3_000, now=2_000
    )
    assert (record.status, record.attempt_count, record.available_at) == (DispatchStatus.QUEUED, 1, 3_000)
    assert record.last_error == "transient error"
    assert_claim_cleared(record)
    assert (record.run_status, record.instance_id, record.completed_at) == (None, None, None)
    assert service.get_dispatch(claimed.dispatch_id) == record


def test_the_second_nack_of_two_allowed_attempts_dead_letters(service):
    """Spec C80: max 2."""
    claimed = submit_and_claim(service, now=1_000, max_attempts=2)
    first = service.nack(claimed.dispatch_id, claim_token=claimed.claim_token, error="first", now=1_100)
    assert (first.status, first.attempt_count) == (DispatchStatus.QUEUED, 1)
    again = claim_again(service, now=first.available_at)
    second = service.nack(again.dispatch_id, claim_token=again.claim_token, error="second", now=2_000)
    assert (second.status, second.attempt_count, second.completed_at) == (DispatchStatus.DEAD_LETTER, 2, 2_000)
    assert second.last_error == "second"
    assert_claim_cleared(second)
    run = service.get_run("run-1")
    assert (run.status, run.termination) == (RunStatus.DONE, TerminationReason.error("second"))


def test_a_single_allowed_attempt_dead_letters_on_the_first_nack(service):
    """Spec C80: max 1."""
    claimed = submit_and_claim(service, max_attempts=1)
    dead = service.nack(claimed.dispatch_id, claim_token=claimed.claim_token, error="only")
    assert (dead.status, dead.attempt_count) == (DispatchStatus.DEAD_LETTER, 1)
    assert_claim_cleared(dead)
    assert service.claim("thread-1", consumer_id="consumer-b") is None


def test_a_dispatch_nacked_with_a_past_retry_at_can_be_claimed_at_once(service):
    """Spec C81: a by-id claim, a nack at 2000 with retry_at 1000, then a thread claim at 2000."""
    queued = service.submit("thread-1", "run-1", now=1_000)
    claimed = service.claim_dispatch(queued.dispatch_id, consumer_id="consumer-a", now=1_000)
    assert claimed is not None
    service.nack(claimed.dispatch_id, claim_token=claimed.claim_token, error="retry", retry_at=1_000, now=2_000)
    again = claim_again(service, now=2_000)
    assert (again.dispatch_id, again.attempt_count) == (queued.dispatch_id, 1)


def test_a_nacked_dispatch_is_not_claimable_before_its_retry_at(service):
    """Spec B38: nack with retry_at 2000; a claim at 1999 finds nothing, one at 2000 gets it."""
    claimed = submit_and_claim(service, now=1_000)
    service.nack(claimed.dispatch_id, claim_token=claimed.claim_token, error="retry", retry_at=2_000, now=1_500)
    assert service.claim("thread-1", consumer_id="consumer-b", now=1_999) is None
    assert claim_again(service, now=2_000).dispatch_id == claimed.dispatch_id


def test_nack_without_retry_at_backs_off_250_ms_then_500_ms(service):
    """Spec Z4 (C82 without the off-by-one): now + 250 after the first failure, now + 500 after the second."""
    claimed = submit_and_claim(service, now=1_000)
    first = service.nack(claimed.dispatch_id, claim_token=claimed.claim_token, error="boom", now=1_100)
    assert (first.attempt_count, first.available_at) == (1, 1_350)
    assert service.claim("thread-1", consumer_id="consumer-b", now=1_349) is None
    again = claim_again(service, now=1_350)
    second = service.nack(again.dispatch_id, claim_token=again.claim_token, error="boom", now=1_400)
    assert (second.attempt_count, second.available_at) == (2, 1_900)
    third = claim_again(service, now=1_900)
    assert service.nack(third.dispatch_id, claim_token=third.claim_token, error="boom", now=2_000).available_at == 3_000
