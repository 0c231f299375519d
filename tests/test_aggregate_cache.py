"""Two services on one store, each with its own aggregate cache: what one writes, the other never
misses. A command that used a stale cached aggregate fails to commit and runs again on fresh reads,
and one that writes nothing checks its cached reads before answering."""

from __future__ import annotations

import pytest

from run_mailbox import DispatchStatus, DispatchSuperseded, RunStatus, TerminationReason


def test_an_owner_whose_cache_missed_an_interrupt_is_still_fenced(pair):
    a, b = pair
    a.submit("t", "r1")
    claimed = a.claim("t", consumer_id="w")
    assert claimed is not None and len(a.cache) > 0
    b.interrupt("t")  # a's cached dispatch and mailbox predate the interrupt
    with pytest.raises(DispatchSuperseded):
        a.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    assert b.get_dispatch(claimed.dispatch_id).status is DispatchStatus.SUPERSEDED


def test_a_claim_that_finds_nothing_in_its_cache_sees_what_another_service_queued(pair):
    a, b = pair
    a.submit("t", "r1")
    first = a.claim("t", consumer_id="w")
    a.ack(first.dispatch_id, claim_token=first.claim_token)
    assert a.claim("t", consumer_id="w") is None  # cached: nothing ready on t
    b.submit("t", "r2")
    second = a.claim("t", consumer_id="w")
    assert second is not None and second.run_id == "r2"


def test_finishing_a_run_sees_its_dispatch_requeued_by_another_service(pair, clock):
    a, b = pair
    a.submit("t", "r1")
    claimed = a.claim("t", consumer_id="w")
    a.get_run("r1")
    b.nack(claimed.dispatch_id, claim_token=claimed.claim_token, error="flaky")  # queued again, behind a's back
    run = a.finish_run("r1", TerminationReason(type="stopped"))
    assert run.status is RunStatus.DONE
    dispatch = b.get_dispatch(claimed.dispatch_id)
    assert dispatch.status is DispatchStatus.SUPERSEDED, "the queued dispatch of a finished run must not run"


def test_two_services_claiming_one_thread_never_both_win(pair):
    a, b = pair
    for n in range(3):
        a.submit("t", f"r{n}")
    b.claim("t", consumer_id="b")  # b knows the thread is busy; a's cache does not
    assert a.claim("t", consumer_id="a") is None
    assert sum(d.status is DispatchStatus.CLAIMED for d in b.list_dispatches("t")) == 1


def test_one_service_alone_commits_every_command_first_time_from_its_cache(service):
    """The cached reads of a service that is the only writer are never stale: no attempt runs twice."""
    for n in range(10):
        service.submit(f"t{n % 3}", f"r{n}")
    while claimed := service.claim_next(consumer_id="w", limit=3, start=True):
        for dispatch in claimed:
            service.extend_lease(dispatch.dispatch_id, claim_token=dispatch.claim_token)
            service.ack(dispatch.dispatch_id, claim_token=dispatch.claim_token)
    assert service.count_by_status()["acked"] == 10
    assert service.runner.retries == 0
    assert len(service.cache) > 0
