"""Spec D 98-102: dedupe keys per thread, cancel, and duplicate ids (Z8) on every backend."""

from __future__ import annotations

import pytest

from run_mailbox.domain import (
    DedupeKeyConflict,
    DispatchStatus,
    DuplicateDispatch,
    DuplicateRun,
    InvalidTransition,
    RunNotFound,
    RunStatus,
)

T = "thread-1"


def log_length(service) -> int:
    return service.recorder.max_notification_id() or 0


# ------------------------------------------------------------------ dedupe keys


def test_a_dedupe_key_held_by_an_open_dispatch_refuses_a_second_submit_on_the_thread(service):
    """98."""
    service.submit(T, "r1", dedupe_key="unique-key", dispatch_id="d1")
    before = log_length(service)
    with pytest.raises(DedupeKeyConflict, match="unique-key") as refused:
        service.submit(T, "r2", dedupe_key="unique-key")
    assert refused.value.holder == "d1"
    assert log_length(service) == before
    with pytest.raises(RunNotFound):
        service.get_run("r2")


def test_a_dedupe_key_held_by_a_claimed_dispatch_still_refuses(service):
    """98: Claimed is non-terminal."""
    service.submit(T, "r1", dedupe_key="dk-1")
    service.claim(T, consumer_id="c")
    with pytest.raises(DedupeKeyConflict, match="dk-1"):
        service.submit(T, "r2", dedupe_key="dk-1")


def test_a_different_dedupe_key_on_the_same_thread_is_accepted(service):
    """98."""
    service.submit(T, "r1", dedupe_key="dk-1")
    second = service.submit(T, "r2", dedupe_key="dk-2")
    assert second.dedupe_key == "dk-2"
    assert len(service.list_dispatches(T, status=DispatchStatus.QUEUED)) == 2


def test_the_same_dedupe_key_on_another_thread_is_accepted(service):
    """98, Z9: dedupe is scoped per thread."""
    service.submit("thread-a", "r1", dedupe_key="dk-1")
    other = service.submit("thread-b", "r2", dedupe_key="dk-1")
    assert other.thread_id == "thread-b" and other.status is DispatchStatus.QUEUED


def test_a_dedupe_key_is_reusable_after_its_holder_is_cancelled(service):
    """99."""
    service.submit(T, "r1", dedupe_key="dk-1", dispatch_id="d1")
    service.cancel("d1")
    again = service.submit(T, "r2", dedupe_key="dk-1")
    assert again.status is DispatchStatus.QUEUED and again.dedupe_key == "dk-1"


def test_a_dedupe_key_is_reusable_after_its_holder_is_acked(service):
    """99."""
    service.submit(T, "r1", dedupe_key="dk-1", dispatch_id="d1")
    claimed = service.claim(T, consumer_id="c")
    service.ack("d1", claim_token=claimed.claim_token)
    again = service.submit(T, "r2", dedupe_key="dk-1")
    assert again.status is DispatchStatus.QUEUED


def test_a_dedupe_key_is_reusable_after_its_holder_is_superseded(service):
    """99: every terminal status frees the key."""
    service.submit(T, "r1", dedupe_key="dk-1")
    service.interrupt(T)
    assert service.submit(T, "r2", dedupe_key="dk-1").status is DispatchStatus.QUEUED


# ------------------------------------------------------------------ cancel


def test_cancelling_a_queued_dispatch_ends_it_and_its_run_cancelled(service, clock):
    """100, 102."""
    service.submit(T, "r1", dispatch_id="d1", now=1_000)
    cancelled = service.cancel("d1", now=2_000)
    assert cancelled.status is DispatchStatus.CANCELLED
    assert cancelled.completed_at == 2_000
    assert (cancelled.claim_token, cancelled.claimed_by, cancelled.lease_until) == (None, None, None)
    assert service.get_dispatch("d1") == cancelled
    run = service.get_run("r1")
    assert run.status is RunStatus.DONE
    assert run.termination.type == "cancelled"
    assert run.dispatch_id == "d1"
    assert service.claim(T, consumer_id="c", now=3_000) is None


def test_cancelling_records_a_run_cancelled_event_correlated_with_the_dispatch(service):
    """102."""
    service.submit(T, "r1", dispatch_id="d1")
    service.cancel("d1")
    events = [e for e in service.canonical_events(limit=10_000) if e.kind == "RunCancelled"]
    assert len(events) == 1
    event = events[0]
    assert event.payload["dispatch_id"] == "d1"
    assert event.correlation_id == "d1"
    assert event.payload["status"] == "cancelled"
    assert event.run_id == "r1" and event.thread_id == T


def test_cancelling_a_claimed_dispatch_is_refused_and_it_stays_claimed(service):
    """101."""
    service.submit(T, "r1", dispatch_id="d1")
    claimed = service.claim(T, consumer_id="c")
    before = log_length(service)
    with pytest.raises(InvalidTransition):
        service.cancel("d1")
    assert service.get_dispatch("d1") == claimed
    assert log_length(service) == before
    assert service.get_run("r1").status is RunStatus.CREATED


@pytest.mark.parametrize("finish", ["cancel", "ack"])
def test_cancelling_a_terminal_dispatch_is_refused(service, finish):
    """100, 101: only Queued can be cancelled."""
    service.submit(T, "r1", dispatch_id="d1")
    if finish == "cancel":
        service.cancel("d1")
    else:
        claimed = service.claim(T, consumer_id="c")
        service.ack("d1", claim_token=claimed.claim_token)
    stored = service.get_dispatch("d1")
    with pytest.raises(InvalidTransition):
        service.cancel("d1")
    assert service.get_dispatch("d1") == stored


# ------------------------------------------------------------------ duplicate ids


@pytest.mark.parametrize("thread", [T, "thread-2"])
def test_a_duplicate_dispatch_id_is_refused_on_any_thread(service, thread):
    """Z8."""
    original = service.submit(T, "r1", dispatch_id="d1")
    before = log_length(service)
    with pytest.raises(DuplicateDispatch, match="d1"):
        service.submit(thread, "r2", dispatch_id="d1")
    assert service.get_dispatch("d1") == original
    assert log_length(service) == before


def test_a_duplicate_dispatch_id_of_a_terminal_dispatch_is_refused(service):
    """Z8: a terminal dispatch cannot be turned back into Queued."""
    service.submit(T, "r1", dispatch_id="d1")
    cancelled = service.cancel("d1")
    with pytest.raises(DuplicateDispatch):
        service.submit(T, "r2", dispatch_id="d1")
    assert service.get_dispatch("d1") == cancelled


def test_a_reused_run_id_is_refused(service):
    """Z8 for runs: a submit never overwrites an existing run."""
    service.submit(T, "r1", dispatch_id="d1")
    run = service.get_run("r1")
    before = log_length(service)
    with pytest.raises(DuplicateRun, match="r1"):
        service.submit("thread-2", "r1", dispatch_id="d2")
    assert service.get_run("r1") == run
    assert log_length(service) == before
    assert service.list_dispatches("thread-2") == []
