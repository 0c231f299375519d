"""Redriving dead letters (decision 0012): one by id, or all matching a filter, on every backend."""

from __future__ import annotations

import json
import threading

import pytest

from run_mailbox import (
    AlreadyRedriven,
    AsyncMailboxService,
    DedupeKeyConflict,
    DispatchNotFound,
    DispatchStatus,
    InvalidArgument,
    InvalidTransition,
    MailboxService,
    RunStatus,
)
from run_mailbox.domain.ids import redrive_run_id
from run_mailbox.infrastructure.views.host import ViewHost
from run_mailbox.projections.payloads import ANY_EVENT


def log_end(service: MailboxService) -> int:
    return service.recorder.max_notification_id() or 0


def dead(service: MailboxService, thread_id: str, run_id: str, dispatch_id: str, how: str, **submit) -> int:
    """Dead-letters a new run's dispatch ``how``: permanent_failure, attempts_exhausted or lease_expired;
    returns when (the clock's time)."""
    clock = service.clock
    if how != "permanent_failure":
        submit["max_attempts"] = 1
    service.submit(thread_id, run_id, dispatch_id=dispatch_id, **submit)
    claimed = service.claim_dispatch(dispatch_id, consumer_id="w", lease_ms=1_000)
    if how == "permanent_failure":
        service.dead_letter(dispatch_id, claim_token=claimed.claim_token, error="bad input")
    elif how == "attempts_exhausted":
        service.nack(dispatch_id, claim_token=claimed.claim_token, error="model timeout")
    else:
        clock.advance(1_001)  # type: ignore[attr-defined]
        service.reclaim_expired_leases()
    assert service.get_dispatch(dispatch_id).status is DispatchStatus.DEAD_LETTER
    return clock()


def test_redrive_queues_a_new_run_on_the_same_thread_and_agent_naming_the_dead_letter(service, clock):
    dead(service, "t1", "r1", "d1", "permanent_failure", agent_id="bot", priority=7, dedupe_key="k1")
    old_dispatch, old_run = service.get_dispatch("d1"), service.get_run("r1")
    clock.advance(10)
    result = service.redrive("d1")
    assert result.run_id == redrive_run_id("d1")
    assert (result.dead_letter.dispatch_id, result.dead_letter.reason, result.dead_letter.agent_id) == (
        "d1",
        "permanent_failure",
        "bot",
    )
    new = service.get_dispatch(result.dispatch.dispatch_id)
    assert (new.thread_id, new.run_id, new.status, new.priority, new.dedupe_key) == (
        "t1",
        result.run_id,
        DispatchStatus.QUEUED,
        7,
        "k1",
    )
    assert (new.max_attempts, new.attempt_count, new.available_at) == (old_dispatch.max_attempts, 0, clock.now)
    run = service.get_run(result.run_id)
    assert (run.thread_id, run.agent_id, run.status, run.redrive_of) == ("t1", "bot", RunStatus.CREATED, "d1")
    # The dead letter and its run are final: untouched.
    assert service.get_dispatch("d1") == old_dispatch and service.get_run("r1") == old_run
    assert old_run.redrive_of is None
    created = [e for e in service.iter_canonical_events() if e.kind == "RunCreated"]
    assert [e.payload.get("redrive_of") for e in created] == [None, "d1"]
    assert "redrive_of" not in created[0].payload  # an ordinary run's envelope is what it always was
    for envelope in service.iter_canonical_events():
        ANY_EVENT.validate_json(envelope.to_json_line())


def test_redriving_the_same_dead_letter_again_is_refused_and_writes_nothing(service):
    dead(service, "t1", "r1", "d1", "attempts_exhausted")
    first = service.redrive("d1")
    end = log_end(service)
    with pytest.raises(AlreadyRedriven) as refused:
        service.redrive("d1")
    assert refused.value.run_id == first.run_id and refused.value.dispatch_id == "d1"
    assert "already redriven" in str(refused.value)
    assert log_end(service) == end
    assert service.count_by_status()["queued"] == 1


def test_a_redrive_under_an_idempotency_key_returns_the_first_result_when_retried(service):
    dead(service, "t1", "r1", "d1", "permanent_failure")
    first = service.redrive("d1", idempotency_key="op-1")
    end = log_end(service)
    assert service.redrive("d1", idempotency_key="op-1") == first
    assert log_end(service) == end


def test_only_a_dead_letter_can_be_redriven(service):
    service.submit("t1", "r1", dispatch_id="queued")
    end = log_end(service)
    with pytest.raises(InvalidTransition, match="it is queued, must be dead_letter"):
        service.redrive("queued")
    with pytest.raises(DispatchNotFound):
        service.redrive("no-such-dispatch")
    with pytest.raises(InvalidArgument, match="priority"):
        service.redrive("queued", priority=256)
    assert log_end(service) == end


def test_a_redriven_run_runs_like_any_other_and_its_own_dead_letter_redrives_again(service):
    dead(service, "t1", "r1", "d1", "lease_expired", priority=3)
    redriven = service.redrive("d1", priority=0)
    assert redriven.dispatch.priority == 0 and redriven.dead_letter.reason == "lease_expired"
    claimed = service.claim("t1", consumer_id="w2")
    assert claimed.dispatch_id == redriven.dispatch.dispatch_id
    service.dead_letter(claimed.dispatch_id, claim_token=claimed.claim_token, error="still bad")
    again = service.redrive(claimed.dispatch_id)
    assert again.run_id == redrive_run_id(claimed.dispatch_id) != redriven.run_id
    assert service.get_run(again.run_id).redrive_of == claimed.dispatch_id
    claimed = service.claim("t1", consumer_id="w3")
    service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    service.ack(claimed.dispatch_id, claim_token=claimed.claim_token)
    assert service.get_run(again.run_id).status is RunStatus.DONE


@pytest.fixture
def dead_letters(service, clock):
    """Five dead letters: three reasons, two threads, two agents, at known times."""
    at = {}
    at["a1"] = dead(service, "ta", "ra1", "a1", "permanent_failure", agent_id="bot")
    clock.advance(100)
    at["a2"] = dead(service, "ta", "ra2", "a2", "attempts_exhausted", agent_id="bot")
    clock.advance(100)
    at["b1"] = dead(service, "tb", "rb1", "b1", "lease_expired", agent_id="other")
    clock.advance(100)
    at["b2"] = dead(service, "tb", "rb2", "b2", "permanent_failure", agent_id="bot")
    clock.advance(100)
    at["a3"] = dead(service, "ta", "ra3", "a3", "permanent_failure", agent_id="other")
    service.submit("ta", "ra4", dispatch_id="a4")  # queued: never a dead letter
    return at


def ids(entries) -> list[str]:
    return [e.dispatch_id for e in entries]


def test_dead_letters_lists_them_oldest_first_with_agent_reason_and_time(service, dead_letters):
    listed = service.dead_letters()
    assert ids(listed) == ["a1", "a2", "b1", "b2", "a3"]
    b1 = listed[2]
    assert (b1.thread_id, b1.run_id, b1.agent_id, b1.reason) == ("tb", "rb1", "other", "lease_expired")
    assert (b1.dead_lettered_at, b1.attempt_count, b1.max_attempts) == (dead_letters["b1"], 1, 1)
    assert listed[0].error == "bad input" and listed[1].error == "model timeout"
    assert all(e.redriven_by is None for e in listed)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"thread_id": "ta"}, ["a1", "a2", "a3"]),
        ({"agent_id": "other"}, ["b1", "a3"]),
        ({"reason": "permanent_failure"}, ["a1", "b2", "a3"]),
        ({"thread_id": "tb", "agent_id": "bot"}, ["b2"]),
        ({"reason": "lease_expired", "agent_id": "bot"}, []),
    ],
)
def test_dead_letters_and_redrive_many_filter_by_thread_agent_and_reason(service, dead_letters, filters, expected):
    assert ids(service.dead_letters(**filters)) == expected
    result = service.redrive_many(**filters)
    assert [r.dead_letter.dispatch_id for r in result.redriven] == expected
    assert (result.refused, result.more) == ([], False)
    assert ids(service.dead_letters(**filters)) == []
    assert ids(service.dead_letters(**filters, include_redriven=True)) == expected


def test_the_time_range_includes_both_ends(service, dead_letters):
    since, until = dead_letters["a2"], dead_letters["b2"]
    assert ids(service.dead_letters(since=since, until=until)) == ["a2", "b1", "b2"]
    assert ids(service.dead_letters(since=since + 1)) == ["b1", "b2", "a3"]
    assert ids(service.dead_letters(until=since - 1)) == ["a1"]
    result = service.redrive_many(since=since, until=until)
    assert [r.dead_letter.dispatch_id for r in result.redriven] == ["a2", "b1", "b2"]
    with pytest.raises(InvalidArgument, match="until"):
        service.redrive_many(since=until, until=since)


def test_redrive_many_works_in_bounded_batches_until_none_is_left(service, dead_letters):
    transactions = service.transactions
    batches = []
    while True:
        result = service.redrive_many(limit=2)
        batches.append(([r.dead_letter.dispatch_id for r in result.redriven], result.more))
        if not result.more:
            break
    assert batches == [(["a1", "a2"], True), (["b1", "b2"], True), (["a3"], False)]
    assert service.transactions == transactions + 3  # one transaction per batch
    assert service.redrive_many().redriven == []
    redriven = service.dead_letters(include_redriven=True)
    assert all(e.redriven_by == redrive_run_id(e.dispatch_id) for e in redriven)
    assert {service.get_run(e.redriven_by).redrive_of for e in redriven} == set(ids(redriven))
    with pytest.raises(AlreadyRedriven):
        service.redrive("b2")


def test_redrive_many_skips_what_was_redriven_and_reports_what_it_refuses(service, dead_letters):
    service.redrive("a2")
    dead(service, "tc", "rc1", "c1", "permanent_failure", dedupe_key="k")
    service.submit("tc", "rc2", dispatch_id="c2", dedupe_key="k")  # holds the key now
    with pytest.raises(DedupeKeyConflict) as refused:
        service.redrive("c1")
    # The refusal names the dead letter's thread and key, and the dispatch that holds it (spec F).
    assert (refused.value.thread_id, refused.value.dedupe_key, refused.value.holder) == ("tc", "k", "c2")
    result = service.redrive_many()
    assert [r.dead_letter.dispatch_id for r in result.redriven] == ["a1", "b1", "b2", "a3"]
    assert [(r.dispatch_id, r.error) for r in result.refused] == [("c1", "DedupeKeyConflict")]
    assert ids(service.dead_letters()) == ["c1"]


def test_views_and_invariants_hold_after_redrives(service, dead_letters):
    service.redrive_many()
    host = ViewHost(service)
    try:
        host.catch_up()
        diffs, problems = host.verify()
        assert [d for d in diffs if d.differences] == [] and problems == []
        assert {row.run_id for row in host.ready_dispatches(limit=100)} >= {redrive_run_id("a1")}
        assert len(host.dead_letters()) == 5  # the dead letters stay what they are
    finally:
        host.close()


def test_the_async_service_redrives_and_lists(env, clock):
    import asyncio

    sync = MailboxService(env=env, clock=clock)
    dead(sync, "t1", "r1", "d1", "permanent_failure")
    dead(sync, "t1", "r2", "d2", "attempts_exhausted")

    async def main() -> None:
        async with AsyncMailboxService(sync) as mailbox:
            assert ids(await mailbox.dead_letters(reason="attempts_exhausted")) == ["d2"]
            one = await mailbox.redrive("d1")
            assert one.run_id == redrive_run_id("d1")
            many = await mailbox.redrive_many()
            assert [r.dead_letter.dispatch_id for r in many.redriven] == ["d2"]
            with pytest.raises(AlreadyRedriven):
                await mailbox.redrive("d2")

    try:
        asyncio.run(main())
    finally:
        sync.close()


@pytest.mark.postgres
def test_concurrent_redrives_of_one_dead_letter_queue_one_run(postgres_env, clock):
    services = [MailboxService(env=postgres_env, clock=clock) for _ in range(4)]
    try:
        dead(services[0], "t1", "r1", "d1", "permanent_failure")
        for i in range(6):
            dead(services[0], "t2", f"r2-{i}", f"e{i}", "attempts_exhausted")
        outcomes: list[object] = []
        barrier = threading.Barrier(len(services))

        def race(service: MailboxService) -> None:
            barrier.wait()
            try:
                outcomes.append(service.redrive("d1"))
            except AlreadyRedriven as refused:
                outcomes.append(refused)
            outcomes.append(service.redrive_many(thread_id="t2", limit=3))

        threads = [threading.Thread(target=race, args=(s,)) for s in services]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(isinstance(o, AlreadyRedriven) for o in outcomes) == len(services) - 1
        redriven = [r.dead_letter.dispatch_id for o in outcomes if hasattr(o, "redriven") for r in o.redriven]
        assert sorted(redriven) == [f"e{i}" for i in range(6)]  # each exactly once
        counts = services[0].count_by_status()
        assert counts["queued"] == 7 and counts["dead_letter"] == 7
    finally:
        for s in services:
            s.close()


def test_redrive_many_under_an_idempotency_key_returns_the_first_result(memory_service):
    dead(memory_service, "t1", "r1", "d1", "permanent_failure")
    first = memory_service.redrive_many(idempotency_key="incident-42")
    end = log_end(memory_service)
    assert memory_service.redrive_many(idempotency_key="incident-42") == first
    assert log_end(memory_service) == end and len(first.redriven) == 1


def test_a_run_created_and_a_run_snapshot_stored_before_redrive_existed_read_back(memory_service):
    """RunCreated version 1 had no ``redrive_of``, nor did run records before version 3 (in snapshots)."""
    from eventsourcing.persistence import StoredEvent

    from run_mailbox.domain.ids import run_aggregate_id
    from run_mailbox.domain.model import Snapshot
    from run_mailbox.domain.run import Run

    memory_service.submit("t1", "r1", agent_id="bot")
    stored = memory_service.recorder.select_events(run_aggregate_id("r1"))[0]
    assert stored.state.startswith(b'{"v":3,')
    body = json.loads(b"{" + stored.state[len(b'{"v":3,') :])
    assert body.pop("redrive_of") is None
    body.update(originator_id=str(stored.originator_id), originator_version=1)  # version 1 held them
    old = StoredEvent(stored.originator_id, 1, "Run.RunCreated", b'{"v":1,' + json.dumps(body).encode()[1:])
    created = memory_service.mapper.to_domain_event(old)
    assert created.redrive_of is None and created.agent_id == "bot"
    record = memory_service.get_run("r1").model_dump(mode="json")
    del record["redrive_of"]
    snapshot = Snapshot(
        originator_id=run_aggregate_id("r1"),
        originator_version=1,
        timestamp=created.timestamp,
        topic="Run",
        state={"record": record, "record_version": 2},
    )
    assert snapshot.mutate(None).record == memory_service.get_run("r1")
    assert Run.record_version == 3


def test_the_reasons_a_filter_takes_are_those_a_dead_letter_records():
    from typing import get_args

    from run_mailbox import DeadLetterReason
    from run_mailbox.domain.dispatch import Dispatch

    assert get_args(DeadLetterReason) == get_args(Dispatch.DispatchDeadLettered.model_fields["reason"].annotation)
