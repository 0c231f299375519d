"""Command idempotency keys (spec H as it applies to commands, Z11): a true retry returns the
original result and writes nothing; a different command or different arguments conflict."""

from __future__ import annotations

import pytest

from run_mailbox.domain import DedupeKeyConflict, DispatchNotFound, DispatchStatus, IdempotencyConflict

T = "thread-1"


def log_length(service) -> int:
    return service.recorder.max_notification_id() or 0


def kinds(service) -> list[str]:
    return [e.kind for e in service.canonical_events(limit=10_000)]


def claimed(service, dispatch_id: str = "d1", **submit_args):
    service.submit(T, f"run-{dispatch_id}", dispatch_id=dispatch_id, **submit_args)
    return service.claim_dispatch(dispatch_id, consumer_id="c")


def test_a_retried_submit_returns_the_original_dispatch_and_writes_nothing(service):
    first = service.submit(T, "r1", priority=7, now=1_000, idempotency_key="k-submit")
    length, transactions = log_length(service), service.transactions
    again = service.submit(T, "r1", priority=7, now=9_000, idempotency_key="k-submit")
    assert again == first
    assert log_length(service) == length
    assert service.transactions == transactions
    assert [d.dispatch_id for d in service.list_dispatches(T)] == [first.dispatch_id]


def test_a_retried_submit_is_not_refused_as_a_duplicate_run(service):
    """The key is checked before the run-id and dedupe checks."""
    first = service.submit(T, "r1", dedupe_key="dk", dispatch_id="d1", idempotency_key="k")
    assert service.submit(T, "r1", dedupe_key="dk", dispatch_id="d1", idempotency_key="k") == first


@pytest.mark.parametrize(
    "changed",
    [{"run_id": "r2"}, {"priority": 8}, {"thread_id": "thread-2"}, {"dedupe_key": "dk"}, {"available_at": 50_000}],
)
def test_reusing_a_submit_key_with_different_arguments_conflicts(service, changed):
    service.submit(T, "r1", priority=7, idempotency_key="k")
    length = log_length(service)
    args = {"thread_id": T, "run_id": "r1", "priority": 7, **changed}
    with pytest.raises(IdempotencyConflict, match="k"):
        service.submit(**args, idempotency_key="k")
    assert log_length(service) == length


def test_reusing_a_key_for_a_different_command_conflicts(service):
    first = service.submit(T, "r1", dispatch_id="d1", idempotency_key="k")
    length = log_length(service)
    with pytest.raises(IdempotencyConflict):
        service.cancel("d1", idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        service.interrupt(T, idempotency_key="k")
    assert log_length(service) == length
    assert service.get_dispatch("d1") == first


def test_a_retried_claim_returns_the_same_claim_token(service):
    service.submit(T, "r1", dispatch_id="d1")
    first = service.claim(T, consumer_id="c", lease_ms=5_000, now=1_000, idempotency_key="k-claim")
    length = log_length(service)
    again = service.claim(T, consumer_id="c", lease_ms=5_000, now=1_200, idempotency_key="k-claim")
    assert again == first and again.claim_token == first.claim_token
    assert log_length(service) == length
    assert kinds(service).count("DispatchClaimed") == 1
    assert service.get_dispatch("d1").claim_token == first.claim_token


def test_a_retried_claim_by_id_returns_the_same_claim_token(service):
    service.submit(T, "r1", dispatch_id="d1")
    first = service.claim_dispatch("d1", consumer_id="c", idempotency_key="k")
    assert service.claim_dispatch("d1", consumer_id="c", idempotency_key="k") == first


def test_a_claim_with_another_consumer_under_the_same_key_conflicts(service):
    service.submit(T, "r1")
    service.claim(T, consumer_id="c1", idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        service.claim(T, consumer_id="c2", idempotency_key="k")


def test_a_retried_empty_claim_stays_empty_after_work_arrives(service):
    """The original answer was None; a retry of that same claim returns None again."""
    assert service.claim(T, consumer_id="c", idempotency_key="k") is None
    service.submit(T, "r1", dispatch_id="d1")
    assert service.claim(T, consumer_id="c", idempotency_key="k") is None
    assert service.get_dispatch("d1").status is DispatchStatus.QUEUED


def test_a_retried_nack_counts_the_failure_once(service):
    token = claimed(service).claim_token
    first = service.nack("d1", claim_token=token, error="boom", now=2_000, idempotency_key="k-nack")
    length = log_length(service)
    again = service.nack("d1", claim_token=token, error="boom", now=2_500, idempotency_key="k-nack")
    assert again == first
    assert again.attempt_count == 1 and again.status is DispatchStatus.QUEUED
    assert log_length(service) == length


def test_a_nack_retry_with_another_error_conflicts(service):
    token = claimed(service).claim_token
    service.nack("d1", claim_token=token, error="boom", idempotency_key="k")
    with pytest.raises(IdempotencyConflict):
        service.nack("d1", claim_token=token, error="other", idempotency_key="k")


def test_a_retried_ack_returns_the_acked_dispatch_instead_of_failing(service):
    token = claimed(service).claim_token
    first = service.ack("d1", claim_token=token, idempotency_key="k-ack")
    length = log_length(service)
    assert service.ack("d1", claim_token=token, idempotency_key="k-ack") == first
    assert first.status is DispatchStatus.ACKED
    assert log_length(service) == length


def test_a_retried_interrupt_bumps_the_epoch_once(service):
    service.submit(T, "r1", dispatch_id="d1")
    first = service.interrupt(T, now=2_000, idempotency_key="k-int")
    length = log_length(service)
    again = service.interrupt(T, now=3_000, idempotency_key="k-int")
    assert again == first
    assert service.thread_epoch(T) == first.new_dispatch_epoch == 1
    assert log_length(service) == length


def test_a_genuine_second_interrupt_with_its_own_key_bumps_the_epoch_again(service):
    """Z11: a second occurrence has a key of its own."""
    service.interrupt(T, idempotency_key="k-1")
    assert service.interrupt(T, idempotency_key="k-2").new_dispatch_epoch == 2


def test_a_retried_reclaim_returns_the_same_records_and_reclaims_nothing_more(service):
    service.submit(T, "r1", dispatch_id="d1", now=500)
    service.claim(T, consumer_id="c", lease_ms=100, now=1_000)
    first = service.reclaim_expired_leases(now=2_000, idempotency_key="k-sweep")
    assert [d.dispatch_id for d in first] == ["d1"]
    again_claimed = service.claim(T, consumer_id="c2", lease_ms=100, now=2_000)
    length = log_length(service)
    again = service.reclaim_expired_leases(now=9_000, idempotency_key="k-sweep")
    assert again == first
    assert log_length(service) == length
    assert service.get_dispatch("d1").claim_token == again_claimed.claim_token


def test_a_refused_command_records_no_key(service):
    with pytest.raises(DispatchNotFound):
        service.cancel("d-missing", idempotency_key="k")
    submitted = service.submit(T, "r1", dispatch_id="d1", idempotency_key="k")
    assert submitted.status is DispatchStatus.QUEUED


def test_a_submit_refused_by_dedupe_records_no_key(service):
    service.submit(T, "r1", dedupe_key="dk", dispatch_id="d1")
    with pytest.raises(DedupeKeyConflict):
        service.submit(T, "r2", dedupe_key="dk", idempotency_key="k")
    service.cancel("d1")
    retried = service.submit(T, "r2", dedupe_key="dk", idempotency_key="k")
    assert retried.status is DispatchStatus.QUEUED and retried.run_id == "r2"


def test_a_retried_start_fenced_since_returns_the_original_and_supersedes_nothing(service):
    """A retry whose fresh run would save a supersession and refuse (the thread was interrupted after
    the start) must not record that: the key says the command already happened, so it replays."""
    token = claimed(service).claim_token
    first = service.record_start("d1", claim_token=token, idempotency_key="k-start")
    service.interrupt(T)
    length = log_length(service)
    assert service.record_start("d1", claim_token=token, idempotency_key="k-start") == first
    assert log_length(service) == length
    assert service.get_dispatch("d1").status is DispatchStatus.CLAIMED


def test_a_first_keyed_command_does_not_look_its_key_up(service):
    """The key's row goes in with the command's events (the store refuses a duplicate), so a keyed
    command is not a round trip dearer than an unkeyed one; a retry of it still replays."""
    lookups = []
    find = service.tables.find_idempotency

    def counting(key):
        lookups.append(key)
        return find(key)

    service.tables.find_idempotency = counting
    first = service.submit(T, "r1", dispatch_id="d1", idempotency_key="k-submit")
    assert lookups == []
    assert service.submit(T, "r1", dispatch_id="d1", idempotency_key="k-submit") == first
    assert lookups == ["k-submit"]
