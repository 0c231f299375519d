"""Batch commands: many runs queued, many dispatches claimed and started, many acked, each batch in
one transaction, with the same rules as the single commands."""

from __future__ import annotations

import pytest

from run_mailbox import (
    AckItem,
    DedupeKeyConflict,
    DispatchStatus,
    InvalidArgument,
    RunStatus,
    Submit,
)


def log_length(service) -> int:
    return service.recorder.max_notification_id() or 0


def test_submit_many_queues_every_run_in_one_transaction_in_the_order_given(service):
    before = service.transactions
    records = service.submit_many([Submit(f"t{i}", f"r{i}", priority=i) for i in range(10)])
    assert service.transactions == before + 1
    assert [r.run_id for r in records] == [f"r{i}" for i in range(10)]
    assert [r.priority for r in records] == list(range(10))
    assert all(service.get_run(f"r{i}").status is RunStatus.CREATED for i in range(10))


def test_submit_many_refuses_the_whole_batch_naming_the_run_that_failed(service):
    service.submit("t0", "r-held", dedupe_key="k")
    head = log_length(service)
    with pytest.raises(DedupeKeyConflict, match=r"runs\[1\]"):
        service.submit_many([Submit("t1", "r1"), Submit("t0", "r2", dedupe_key="k"), Submit("t3", "r3")])
    assert log_length(service) == head
    assert service.list_dispatches("t1") == []


@pytest.mark.parametrize(
    ("runs", "field"),
    [
        ([Submit("t1", "r1"), Submit("t2", "r1")], "runs[1].run_id"),
        ([Submit("t1", "r1", dispatch_id="d"), Submit("t2", "r2", dispatch_id="d")], "runs[1].dispatch_id"),
        ([Submit("t1", "r1", now=5)], "runs[0].now"),
        ([], "runs"),
    ],
    ids=["same-run-twice", "same-dispatch-twice", "own-time", "empty"],
)
def test_a_malformed_batch_of_runs_is_refused_before_anything_is_read(service, runs, field):
    with pytest.raises(InvalidArgument) as refused:
        service.submit_many(runs)
    assert refused.value.field == field


def test_claim_next_with_start_claims_and_starts_in_one_transaction(service, clock):
    service.submit_many([Submit(f"t{i}", f"r{i}") for i in range(5)])
    before = service.transactions
    started = service.claim_next(consumer_id="w", limit=3, start=True)
    assert service.transactions == before + 1
    assert len(started) == 3
    for record in started:
        assert record.status is DispatchStatus.CLAIMED and record.run_status is RunStatus.RUNNING
        assert service.get_run(record.run_id).status is RunStatus.RUNNING
        assert service.get_dispatch(record.dispatch_id) == record


def test_ack_many_acks_each_dispatch_and_refuses_the_ones_it_must(service):
    service.submit_many([Submit(f"t{i}", f"r{i}") for i in range(4)])
    started = service.claim_next(consumer_id="w", limit=4, start=True)
    by_thread = {d.thread_id: d for d in started}
    service.interrupt("t2")  # fences t2's claim: its owner's ack supersedes it
    items = [AckItem(by_thread[f"t{i}"].dispatch_id, claim_token=by_thread[f"t{i}"].claim_token) for i in range(4)]
    items[0] = AckItem(items[0].dispatch_id, claim_token="not-the-token")
    before = service.transactions
    result = service.ack_many(items)
    assert service.transactions == before + 1
    assert [r.dispatch_id for r in result.acked] == [by_thread["t1"].dispatch_id, by_thread["t3"].dispatch_id]
    assert [(r.dispatch_id, r.error) for r in result.refused] == [
        (by_thread["t0"].dispatch_id, "ClaimTokenMismatch"),
        (by_thread["t2"].dispatch_id, "DispatchSuperseded"),
    ]
    assert service.get_dispatch(by_thread["t2"].dispatch_id).status is DispatchStatus.SUPERSEDED
    assert service.get_dispatch(by_thread["t0"].dispatch_id).status is DispatchStatus.CLAIMED
    assert all(service.get_run(r.run_id).status is RunStatus.DONE for r in result.acked)


def test_a_batch_issued_again_under_its_key_returns_the_first_result_and_writes_nothing(service):
    first = service.submit_many([Submit("t1", "r1"), Submit("t2", "r2")], idempotency_key="batch-1")
    head = log_length(service)
    assert service.submit_many([Submit("t1", "r1"), Submit("t2", "r2")], idempotency_key="batch-1") == first
    assert log_length(service) == head


def test_claiming_a_thread_with_start_records_the_start_in_the_same_transaction(service):
    service.submit("t1", "r1")
    before = service.transactions
    claimed = service.claim("t1", consumer_id="w", start=True)
    assert service.transactions == before + 1
    assert claimed is not None and claimed.run_status is RunStatus.RUNNING
    assert claimed.instance_id == f"{claimed.dispatch_id}/1"
    assert service.get_run("r1").status is RunStatus.RUNNING
