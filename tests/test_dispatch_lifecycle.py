"""A dispatch from submit to a terminal state, through the service on every backend (spec A)."""

import pytest

from run_mailbox.domain import (
    ClaimTokenMismatch,
    DispatchNotFound,
    DispatchStatus,
    InvalidTransition,
    RunStatus,
    TerminationReason,
)
from tests.helpers import assert_claim_cleared, store_unchanged


def submit_and_claim(service, thread_id="thread-1", run_id="run-1", *, lease_ms=30_000, now=None, **submit):
    """Submits a run and claims it as consumer-1 (both at ``now``, default the clock)."""
    queued = service.submit(thread_id, run_id, now=now, **submit)
    claimed = service.claim(thread_id, consumer_id="consumer-1", lease_ms=lease_ms, now=now)
    assert claimed is not None and claimed.dispatch_id == queued.dispatch_id
    return claimed


# ---------------------------------------------------------------- submit


def test_a_submitted_dispatch_is_queued_with_the_documented_defaults(service, clock):
    """Spec A1."""
    record = service.submit("thread-1", "run-1")
    assert (record.priority, record.max_attempts, record.attempt_count, record.dispatch_epoch) == (128, 5, 0, 0)
    assert record.status is DispatchStatus.QUEUED
    assert record.available_at == record.created_at == record.updated_at == clock.now
    assert_claim_cleared(record)
    assert (record.instance_id, record.run_status, record.completed_at, record.last_error) == (None,) * 4
    assert service.get_dispatch(record.dispatch_id) == record


def test_submit_returns_a_fresh_dispatch_id_distinct_from_the_run_id(service):
    """Spec A27."""
    first = service.submit("thread-1", "run-1")
    second = service.submit("thread-1", "run-2")
    assert first.dispatch_id and first.run_id == "run-1"
    assert first.dispatch_id != first.run_id
    assert first.dispatch_id != second.dispatch_id
    assert service.get_dispatch(first.dispatch_id).run_id == "run-1"
    assert service.get_run("run-1").dispatch_id == first.dispatch_id


def test_a_successful_run_leaves_an_acked_dispatch_with_its_runtime_trace(service, clock):
    """Spec A27, A21: run_status Done, an instance id, a completed_at; the run ends naturally."""
    claimed = submit_and_claim(service)
    service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    clock.advance(500)
    acked = service.ack(claimed.dispatch_id, claim_token=claimed.claim_token)
    assert acked.status is DispatchStatus.ACKED
    assert acked.run_status is RunStatus.DONE
    assert acked.instance_id
    assert acked.completed_at == clock.now
    run = service.get_run("run-1")
    assert (run.status, run.termination, run.error) == (RunStatus.DONE, TerminationReason.natural_end(), None)
    assert run.dispatch_id == acked.dispatch_id


def test_a_listed_thread_shows_its_one_queued_dispatch(service):
    """Spec A18."""
    service.submit("thread-1", "run-1", dispatch_id="d1")
    listed = service.list_dispatches("thread-1")
    assert [(d.dispatch_id, d.status) for d in listed] == [("d1", DispatchStatus.QUEUED)]


def test_a_dispatch_is_stamped_with_its_threads_current_epoch(service):
    """Spec A19: epoch 0 on a fresh thread; after an interrupt a new dispatch carries it and is claimable."""
    first = service.submit("thread-1", "run-1")
    assert first.dispatch_epoch == 0 == service.thread_epoch("thread-1")
    epoch = service.interrupt("thread-1").new_dispatch_epoch
    assert epoch >= 1
    second = service.submit("thread-1", "run-2")
    assert second.dispatch_epoch == epoch == service.thread_epoch("thread-1")
    claimed = service.claim("thread-1", consumer_id="consumer-1")
    assert claimed is not None and claimed.dispatch_id == second.dispatch_id
    assert claimed.dispatch_epoch == epoch


# ---------------------------------------------------------------- claim, start, ack


def test_a_claim_records_its_owner_and_an_ack_clears_it(service):
    """Spec A3, A15: claim at 1100 with lease 900, ack at 3000."""
    queued = service.submit("thread-1", "run-1", now=1_000)
    claimed = service.claim("thread-1", consumer_id="consumer-1", lease_ms=900, now=1_100)
    assert claimed is not None
    assert (claimed.status, claimed.claimed_by, claimed.lease_until) == (DispatchStatus.CLAIMED, "consumer-1", 2_000)
    assert claimed.claim_token
    acked = service.ack(queued.dispatch_id, claim_token=claimed.claim_token, now=3_000)
    assert (acked.status, acked.completed_at) == (DispatchStatus.ACKED, 3_000)
    assert_claim_cleared(acked)
    assert service.get_dispatch(queued.dispatch_id) == acked


def test_recording_the_start_marks_the_dispatch_and_its_run_running(service):
    """Spec A20."""
    claimed = submit_and_claim(service)
    started = service.record_start(
        claimed.dispatch_id, claim_token=claimed.claim_token, instance_id="attempt-1", now=1_500
    )
    assert (started.status, started.instance_id, started.run_status) == (
        DispatchStatus.CLAIMED,
        "attempt-1",
        RunStatus.RUNNING,
    )
    assert started.completed_at is None
    assert started.claim_token == claimed.claim_token
    run = service.get_run("run-1")
    assert (run.status, run.started_at, run.dispatch_id) == (RunStatus.RUNNING, 1_500, claimed.dispatch_id)


def test_recording_the_start_with_a_wrong_token_is_refused_and_changes_nothing(service):
    """Spec A22."""
    claimed = submit_and_claim(service)
    with store_unchanged(service, claimed.dispatch_id), pytest.raises(ClaimTokenMismatch):
        service.record_start(claimed.dispatch_id, claim_token="stale-token", instance_id="attempt-1")
    record = service.get_dispatch(claimed.dispatch_id)
    assert (record.instance_id, record.run_status) == (None, None)
    assert service.get_run("run-1").status is RunStatus.CREATED


def test_recording_the_start_of_a_queued_or_missing_dispatch_is_refused(service):
    """Spec A22."""
    queued = service.submit("thread-1", "run-1")
    with store_unchanged(service, queued.dispatch_id), pytest.raises(InvalidTransition, match="must be Claimed"):
        service.record_start(queued.dispatch_id, claim_token="some-token")
    record = service.get_dispatch(queued.dispatch_id)
    assert (record.status, record.instance_id, record.run_status) == (DispatchStatus.QUEUED, None, None)
    with pytest.raises(DispatchNotFound):
        service.record_start("no-such-dispatch", claim_token="some-token")


@pytest.mark.parametrize(
    "command",
    [
        lambda s, d: s.ack(d, claim_token="some-token"),
        lambda s, d: s.nack(d, claim_token="some-token", error="boom"),
        lambda s, d: s.dead_letter(d, claim_token="some-token", error="boom"),
    ],
    ids=["ack", "nack", "dead_letter"],
)
def test_finishing_an_unclaimed_dispatch_is_refused_and_changes_nothing(service, command):
    """Spec A5."""
    queued = service.submit("thread-1", "run-1")
    with store_unchanged(service, queued.dispatch_id), pytest.raises(InvalidTransition, match="must be Claimed"):
        command(service, queued.dispatch_id)


def test_a_claimed_dispatch_cannot_be_cancelled_and_a_cancelled_one_cannot_be_claimed(service):
    """Spec A4, A6."""
    claimed = submit_and_claim(service)
    with store_unchanged(service, claimed.dispatch_id), pytest.raises(InvalidTransition, match="must be Queued"):
        service.cancel(claimed.dispatch_id)
    cancelled = service.cancel(service.submit("thread-2", "run-2").dispatch_id)
    with store_unchanged(service, cancelled.dispatch_id), pytest.raises(InvalidTransition, match="must be Queued"):
        service.claim_dispatch(cancelled.dispatch_id, consumer_id="consumer-2")
    assert service.claim("thread-2", consumer_id="consumer-2") is None


# ---------------------------------------------------------------- nack, expiry, dead letter


def test_nack_requeues_until_the_attempts_run_out(service):
    """Spec A15: max 2; nack at 3000 retrying at 4000, then a second nack at 6000 dead-letters."""
    claimed = submit_and_claim(service, max_attempts=2, now=1_000)
    requeued = service.nack(
        claimed.dispatch_id, claim_token=claimed.claim_token, error="temporary failure", retry_at=4_000, now=3_000
    )
    assert (requeued.status, requeued.attempt_count, requeued.available_at) == (DispatchStatus.QUEUED, 1, 4_000)
    assert requeued.last_error == "temporary failure"
    again = service.claim("thread-1", consumer_id="consumer-1", now=4_000)
    assert again is not None and again.claim_token != claimed.claim_token
    dead = service.nack(again.dispatch_id, claim_token=again.claim_token, error="temporary failure", now=6_000)
    assert (dead.status, dead.attempt_count, dead.completed_at) == (DispatchStatus.DEAD_LETTER, 2, 6_000)
    assert_claim_cleared(dead)


def test_an_expired_lease_on_the_last_attempt_dead_letters_with_the_reason(service):
    """Spec A16: attempt 1 of max 2, then the lease runs out."""
    claimed = submit_and_claim(service, max_attempts=2, lease_ms=100, now=1_000)
    service.nack(claimed.dispatch_id, claim_token=claimed.claim_token, error="flaky", retry_at=1_050, now=1_050)
    again = service.claim("thread-1", consumer_id="consumer-2", lease_ms=100, now=1_050)
    assert again is not None and again.attempt_count == 1
    (dead,) = service.reclaim_expired_leases(now=1_151)
    assert (dead.status, dead.attempt_count) == (DispatchStatus.DEAD_LETTER, 2)
    assert dead.last_error == "lease expired; max attempts reached"


def test_a_dead_lettered_dispatch_is_terminal_and_its_run_errors(service):
    """Spec A23."""
    claimed = submit_and_claim(service)
    dead = service.dead_letter(claimed.dispatch_id, claim_token=claimed.claim_token, error="permanent failure")
    assert dead.status is DispatchStatus.DEAD_LETTER and dead.is_terminal
    assert (dead.last_error, dead.attempt_count) == ("permanent failure", 0)
    assert_claim_cleared(dead)
    run = service.get_run("run-1")
    assert (run.status, run.termination) == (RunStatus.DONE, TerminationReason.error("permanent failure"))
    with store_unchanged(service, dead.dispatch_id), pytest.raises(InvalidTransition, match="must be Queued"):
        service.claim_dispatch(dead.dispatch_id, consumer_id="consumer-2")


# ---------------------------------------------------------------- queries


def test_counts_by_status_follow_the_lifecycle(service):
    """Spec A24."""
    d1 = service.submit("thread-a", "run-1", dispatch_id="d1")
    d2 = service.submit("thread-b", "run-2", dispatch_id="d2")
    counts = service.count_by_status()
    assert (counts["queued"], counts["claimed"]) == (2, 0)
    claimed = service.claim("thread-a", consumer_id="consumer-1")
    assert claimed is not None
    counts = service.count_by_status()
    assert (counts["queued"], counts["claimed"]) == (1, 1)
    service.ack(d1.dispatch_id, claim_token=claimed.claim_token)
    service.cancel(d2.dispatch_id)
    assert service.count_by_status() == {
        "queued": 0,
        "claimed": 0,
        "acked": 1,
        "cancelled": 1,
        "superseded": 0,
        "dead_letter": 0,
    }


def test_terminal_dispatches_are_listed_and_paged(service):
    """Spec A25."""
    service.cancel(service.submit("thread-a", "run-1", dispatch_id="d-cancel").dispatch_id)
    service.submit("thread-b", "run-2", dispatch_id="d-supersede")
    service.interrupt("thread-b")
    service.submit("thread-c", "run-3", dispatch_id="d-queued")
    listed = {(d.dispatch_id, d.status) for d in service.list_terminal_dispatches()}
    assert listed == {("d-cancel", DispatchStatus.CANCELLED), ("d-supersede", DispatchStatus.SUPERSEDED)}
    first = service.list_terminal_dispatches(limit=1, offset=0)
    second = service.list_terminal_dispatches(limit=1, offset=1)
    assert len(first) == len(second) == 1
    assert {first[0].dispatch_id, second[0].dispatch_id} == {"d-cancel", "d-supersede"}
    assert service.list_terminal_dispatches(limit=1, offset=2) == []


def test_queued_thread_ids_names_each_thread_with_queued_work_once(service):
    """Spec A26."""
    service.submit("thread-a", "run-1")
    service.submit("thread-a", "run-2")
    service.submit("thread-b", "run-3")
    assert service.queued_thread_ids() == ["thread-a", "thread-b"]
    service.submit("thread-c", "run-4")
    assert service.queued_thread_ids() == ["thread-a", "thread-b", "thread-c"]
    claimed = service.claim("thread-c", consumer_id="consumer-1")
    assert claimed is not None
    assert service.queued_thread_ids() == ["thread-a", "thread-b"]
