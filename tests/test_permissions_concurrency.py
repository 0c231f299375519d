"""Racing decisions and checkpoint commits on real Postgres.

Several service instances (as if several processes) share one store; every racer starts at
a barrier. A decision delivered many times at once is recorded once and resumes the run
once; concurrent commits to one thread never leave a gap or an overlap in its seqs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from run_mailbox.domain import DispatchStatus, RunStatus
from run_mailbox.infrastructure.service import MailboxService

pytestmark = pytest.mark.postgres

RACERS = 8
T = "thread-1"
R = "run-1"
D = "d-1"


@pytest.fixture
def services(postgres_env, clock) -> Iterator[list[MailboxService]]:
    env = {**postgres_env, "POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "2"}
    apps = [MailboxService(env=env, clock=clock) for _ in range(RACERS)]
    yield apps
    for app in apps:
        app.close()


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Runs the calls at once from a barrier; every call must succeed. Returns the results."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a racer hung"
    assert errors == [], f"racers failed: {errors!r}"
    return results


def kinds(service: MailboxService) -> list[str]:
    return [e.kind for e in service.canonical_events(limit=10_000)]


def suspend(service: MailboxService, *tool_call_ids: str, thread: str = T, run_id: str = R) -> None:
    dispatch_id = f"d-{run_id}"
    service.submit(thread, run_id, dispatch_id=dispatch_id)
    claimed = service.claim_dispatch(dispatch_id, consumer_id="worker")
    service.record_start(dispatch_id, claim_token=claimed.claim_token)
    tickets = [{"tool_call_id": t, "tool_name": "shell"} for t in tool_call_ids]
    service.suspend(dispatch_id, claim_token=claimed.claim_token, tickets=tickets)


def msg(message_id: str) -> dict[str, Any]:
    return {"message_id": message_id, "role": "user", "content": [{"type": "text", "text": message_id}]}


# ------------------------------------------------------------------ decisions


def test_one_decision_delivered_by_eight_racers_is_recorded_once_and_resumes_the_run_once(services):
    """145, 141: whatever the path, one decision, one resolution, one resume dispatch."""
    suspend(services[0], "tc-1")
    resume = {"decision_id": "dec-1", "action": "resume", "result": {"approved": True}}
    paths = ["durable_dispatch", "remote_live"]
    outcomes = race(
        [lambda s=s, i=i: s.decide(R, "tc-1", resume, delivery_path=paths[i % 2]) for i, s in enumerate(services)]
    )

    assert all(o == outcomes[0] for o in outcomes)
    assert outcomes[0].resume_dispatch_id is not None
    recorded = kinds(services[0])
    assert recorded.count("MailboxDecisionReceived") == 1
    assert recorded.count("ToolPermissionResolved") == 1
    dispatches = services[0].list_dispatches(T)
    assert sorted((d.dispatch_id, d.status) for d in dispatches) == sorted(
        [(f"d-{R}", DispatchStatus.ACKED), (outcomes[0].resume_dispatch_id, DispatchStatus.QUEUED)]
    )
    assert {d.run_id for d in dispatches} == {R}
    assert len(services[0].get_run(R).decisions) == 1


def test_racing_decisions_for_two_tickets_queue_exactly_one_resume_dispatch(services):
    """141: the last decision pending resumes the run, once, whichever racer it is."""
    suspend(services[0], "tc-1", "tc-2")
    calls = [
        lambda s=s, i=i: s.decide(
            R, f"tc-{i % 2 + 1}", {"decision_id": f"dec-{i % 2 + 1}", "action": "resume", "result": {"approved": True}}
        )
        for i, s in enumerate(services)
    ]
    outcomes = race(calls)

    resumes = {o.resume_dispatch_id for o in outcomes} - {None}
    assert len(resumes) == 1
    queued = services[0].list_dispatches(T, status=DispatchStatus.QUEUED)
    assert [(d.dispatch_id, d.run_id) for d in queued] == [(resumes.pop(), R)]
    recorded = kinds(services[0])
    assert recorded.count("MailboxDecisionReceived") == 2
    assert recorded.count("ToolPermissionResolved") == 2
    assert sorted(d.tool_call_id for d in services[0].get_run(R).decisions) == ["tc-1", "tc-2"]


def test_a_decision_racing_an_interrupt_either_resumes_at_the_new_epoch_or_is_superseded(services):
    """50, 52: whichever commits first, the run never waits forever and never runs stale."""
    threads = [f"thread-{i}" for i in range(RACERS // 2)]
    for thread in threads:
        suspend(services[0], "tc-1", thread=thread, run_id=f"run-{thread}")
    calls: list[Callable[[], Any]] = []
    for i, thread in enumerate(threads):
        decision = {"decision_id": f"dec-{thread}", "action": "resume", "result": {"approved": True}}
        calls.append(lambda s=services[2 * i], t=thread, d=decision: s.decide(f"run-{t}", "tc-1", d))
        calls.append(lambda s=services[2 * i + 1], t=thread: s.interrupt(t))
    race(calls)

    for thread in threads:
        run = services[0].get_run(f"run-{thread}")
        resumed = services[0].get_dispatch(run.decisions[0].resume_dispatch_id)
        if resumed.dispatch_epoch < services[0].thread_epoch(thread):
            assert resumed.status is DispatchStatus.SUPERSEDED
            assert (run.status, run.termination.to_json()) == (RunStatus.DONE, {"type": "cancelled"})
        else:
            assert resumed.status is DispatchStatus.QUEUED
            assert run.status is RunStatus.WAITING
            claimed = services[0].claim(thread, consumer_id="worker")
            assert claimed is not None and claimed.dispatch_id == resumed.dispatch_id


# ------------------------------------------------------------------ checkpoints


def test_eight_racers_committing_the_same_messages_for_one_run_leave_one_checkpoint_range(services):
    services[0].submit(T, R, dispatch_id=D)
    batch = [msg(f"m{i}") for i in range(1, 6)]
    results = race([lambda s=s: s.commit_messages(T, R, batch) for s in services])

    assert all(r == results[0] for r in results)
    assert (results[0].message_seq_start, results[0].message_seq_end) == (1, 5)
    recorded = kinds(services[0])
    assert recorded.count("MessageCommitted") == 5
    assert recorded.count("ThreadMessagesCheckpointed") == 1
    assert [(r.first, r.last) for r in services[0].get_run(R).checkpoints] == [(1, 5)]


def test_four_runs_committing_to_one_thread_at_once_get_contiguous_seqs(services):
    """Z1: no gap, no overlap; each range holds only its own run's messages."""
    run_ids = [f"run-{k}" for k in range(4)]
    for run_id in run_ids:
        services[0].submit(T, run_id)
    batches, size = 5, 3

    def commit_all(service: MailboxService, run_id: str) -> list[Any]:
        return [
            service.commit_messages(T, run_id, [msg(f"{run_id}-m{b}-{i}") for i in range(size)]) for b in range(batches)
        ]

    results = race([lambda s=services[k], r=r: commit_all(s, r) for k, r in enumerate(run_ids)])

    total = len(run_ids) * batches * size
    payloads = [e.payload for e in services[0].canonical_events(limit=10_000) if e.kind == "MessageCommitted"]
    assert sorted(p["message_seq"] for p in payloads) == list(range(1, total + 1))
    by_seq = {p["message_seq"]: p for p in payloads}
    assert [by_seq[s]["parent_message_id"] for s in range(2, total + 1)] == [
        by_seq[s]["message_id"] for s in range(1, total)
    ]
    covered: list[int] = []
    for run_id, committed in zip(run_ids, results, strict=True):
        ranges = [(r.first, r.last) for r in services[0].get_run(run_id).checkpoints]
        assert ranges == _merged([(c.message_seq_start, c.message_seq_end) for c in committed])
        for first, last in ranges:
            assert {by_seq[s]["run_id"] for s in range(first, last + 1)} == {run_id}
            covered.extend(range(first, last + 1))
    assert sorted(covered) == list(range(1, total + 1))
    assert services[0].repair_checkpoints().repaired_ranges == []


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A run's adjacent checkpoints read as one range on its record."""
    merged: list[tuple[int, int]] = []
    for first, last in spans:
        if merged and merged[-1][1] + 1 == first:
            merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged
