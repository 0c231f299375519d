"""The oracle for the dispatch commands: what each must do, predicted from the model before it runs.

Each function takes the model, the clock's ``now`` and the command's arguments and returns an
``Expect``. The rules are the spec's, written independently of the service code, and checked in
the order the contract states them.
"""

from __future__ import annotations

from typing import Any

from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.errors import (
    DedupeKeyConflict,
    DispatchNotFound,
    DuplicateDispatch,
    DuplicateRun,
    InvalidArgument,
    InvalidTransition,
)
from run_mailbox.domain.run import RunRecord
from tests.properties._expect import (
    CANCELLED,
    CLAIMED,
    CLEARED_CLAIM,
    CLEARED_RUNTIME,
    DEAD,
    DONE,
    INTERRUPTED_QUEUED,
    LEASE_EXHAUSTED,
    MAX_LEASE_MS,
    QUEUED,
    RECLAIMED_AFTER_INTERRUPT,
    RUNNING,
    SUPERSEDED,
    Check,
    Expect,
    is_id,
    record_is,
    refuse,
    returns,
    run_ended,
    run_started,
    same,
    succeed,
)
from tests.properties._model import THREADS, Model
from tests.properties._oracle_owner import _superseded


def submit(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if not all(is_id(kw[f]) for f in ("thread_id", "run_id", "agent_id")) or not (
        0 <= kw["priority"] <= 255 and 1 <= kw["max_attempts"] <= 1000
    ):
        return refuse(InvalidArgument, "malformed argument")
    if kw["run_id"] in m.runs:
        return refuse(DuplicateRun, "run ids are never reused")
    if kw["dispatch_id"] in m.dispatches:
        return refuse(DuplicateDispatch, "dispatch ids are never reused (Z8)")
    key, thread = kw["dedupe_key"], kw["thread_id"]
    if key is not None and any(d.dedupe_key == key for d in m.open_on(thread)):
        return refuse(DedupeKeyConflict, "an open dispatch of the thread holds the dedupe key (Z9)")
    due = now if kw["available_at"] is None else kw["available_at"]

    def then(record: DispatchRecord) -> None:
        same(record, thread_id=thread, run_id=kw["run_id"], priority=kw["priority"], status=QUEUED)
        same(record, dispatch_epoch=m.epoch_of(thread), available_at=due, attempt_count=0, created_at=now)
        same(record, dedupe_key=key, max_attempts=kw["max_attempts"])
        if kw["dispatch_id"] is not None:
            same(record, dispatch_id=kw["dispatch_id"])
        assert m.dispatches[record.dispatch_id] == record, "the returned record is the stored one"
        queued = DispatchRecord(
            dispatch_id=record.dispatch_id, thread_id=thread, run_id=kw["run_id"], priority=kw["priority"],
            dedupe_key=key, dispatch_epoch=m.epoch_of(thread), available_at=due, max_attempts=kw["max_attempts"],
            created_at=now, updated_at=now,
        )  # fmt: skip
        record_is(m, queued, None)
        created = RunRecord(run_id=kw["run_id"], thread_id=thread, agent_id=kw["agent_id"],
                            dispatch_id=record.dispatch_id, created_at=now, updated_at=now)  # fmt: skip
        record_is(m, created, None)

    return succeed(then)


def _bad_lease(kw: dict[str, Any]) -> bool:
    return not is_id(kw["consumer_id"]) or not 1 <= kw["lease_ms"] <= MAX_LEASE_MS


def _claimed(m: Model, before: DispatchRecord, kw: dict[str, Any], now: int) -> Check:
    """A claim of ``before``; with ``start``, its start recorded too (as record_start would)."""
    run_before = m.runs[before.run_id]
    started: dict[str, Any] = {}
    if kw.get("start"):
        started = {"run_status": RUNNING, "instance_id": f"{before.dispatch_id}/{before.attempt_count + 1}"}

    def then(record: DispatchRecord | None) -> None:
        assert record is not None, f"expected a claim of {before.dispatch_id}"
        same(record, dispatch_id=before.dispatch_id, status=CLAIMED, claimed_by=kw["consumer_id"])
        same(record, lease_until=now + kw["lease_ms"], attempt_count=before.attempt_count, updated_at=now)
        assert record.claim_token, record
        assert m.dispatches[record.dispatch_id] == record, "the returned record is the stored one"
        record_is(m, before, now, status=CLAIMED, claim_token=record.claim_token, claimed_by=kw["consumer_id"],
                  lease_until=now + kw["lease_ms"], **started)  # fmt: skip
        if started:
            run_started(m, run_before, before.dispatch_id, now)

    return then


def _start_refused(m: Model, picks: list[DispatchRecord], kw: dict[str, Any]) -> Expect | None:
    """``start`` on a dispatch whose run is done: the start is refused, and the claim with it."""
    if kw.get("start") and any(m.runs[p.run_id].status is DONE for p in picks):
        return refuse(InvalidTransition, "start=True, and the run is done")
    return None


def claim(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if not is_id(kw["thread_id"]) or _bad_lease(kw):
        return refuse(InvalidArgument, "malformed argument")
    best = m.best_ready(kw["thread_id"], now)
    if best is None:
        return returns(None, "the thread is busy, empty or not yet due")
    return _start_refused(m, [best], kw) or succeed(_claimed(m, best, kw, now))


def claim_next(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if _bad_lease(kw) or not 1 <= kw["limit"] <= 10_000:
        return refuse(InvalidArgument, "malformed argument")
    bests = [b for t in THREADS if (b := m.best_ready(t, now)) is not None]
    picks = sorted(bests, key=lambda d: (d.priority, d.created_at, d.dispatch_id))[: kw["limit"]]
    refused = _start_refused(m, picks, kw)
    if refused is not None:
        return refused

    def then(records: list[DispatchRecord]) -> None:
        got = [r.dispatch_id for r in records]
        assert got == [p.dispatch_id for p in picks], f"claim_next took {got}, expected the best per thread {picks}"
        for pick, record in zip(picks, records, strict=True):
            _claimed(m, pick, kw, now)(record)

    return succeed(then, writes=bool(picks))


def dispatch_in(m: Model, dispatch_id: str, status: Any, must: str) -> DispatchRecord | Expect:
    """The dispatch the command names, or the refusal due when it is unknown or not in ``status``."""
    d = m.dispatches.get(dispatch_id)
    if d is None:
        return refuse(DispatchNotFound, "no such dispatch")
    if d.status is not status:
        return refuse(InvalidTransition, f"the dispatch is {d.status.value}, {must}")
    return d


def claim_dispatch(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if not is_id(kw["dispatch_id"]) or _bad_lease(kw):
        return refuse(InvalidArgument, "malformed argument")
    d = dispatch_in(m, kw["dispatch_id"], QUEUED, "must be queued")
    if isinstance(d, Expect):
        return d
    if m.claimed_on(d.thread_id) is not None:
        return returns(None, "the thread has a claimed dispatch")
    return _start_refused(m, [d], kw) or succeed(_claimed(m, d, kw, now))


def cancel(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if not is_id(kw["dispatch_id"]):
        return refuse(InvalidArgument, "malformed argument")
    d = dispatch_in(m, kw["dispatch_id"], QUEUED, "only a queued one is cancelled")
    if isinstance(d, Expect):
        return d
    run_before = m.runs[d.run_id]

    def then(record: DispatchRecord) -> None:
        record_is(m, d, now, status=CANCELLED, completed_at=now)
        run_ended(m, d.run_id, run_before.status is DONE, "cancelled", before=run_before, now=now)

    return succeed(then)


def interrupt(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    thread = kw["thread_id"]
    if not is_id(thread):
        return refuse(InvalidArgument, "malformed argument")
    old, queued, active = m.epoch_of(thread), m.queued_on(thread), m.claimed_on(thread)
    runs_before = {d.dispatch_id: m.runs[d.run_id] for d in queued}

    def then(result: Any) -> None:
        m.epochs[thread] = old + 1
        same(result, new_dispatch_epoch=old + 1)
        assert [r.dispatch_id for r in result.superseded] == [q.dispatch_id for q in queued], result
        for q in queued:
            record_is(m, q, now, status=SUPERSEDED, last_error=INTERRUPTED_QUEUED, completed_at=now)
            run_before = runs_before[q.dispatch_id]
            run_ended(m, q.run_id, run_before.status is DONE, "cancelled", before=run_before, now=now)
        if active is None:
            assert result.active_dispatch is None, result
        else:
            # marked interrupted (once: a claim fenced already is left as it is, Z11)
            record_is(m, active, now if active.dispatch_epoch == old else None)
            assert result.active_dispatch == m.dispatches[active.dispatch_id], result

    return succeed(then)


def reclaim_expired_leases(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if not 1 <= kw["limit"] <= 10_000:
        return refuse(InvalidArgument, "malformed argument")
    claimed = [d for d in m.dispatches.values() if d.status is CLAIMED and d.lease_until < now]  # type: ignore[operator]
    expired = sorted(claimed, key=lambda d: (d.lease_until, d.dispatch_id))[: kw["limit"]]
    fenced = {d.dispatch_id for d in expired if d.dispatch_epoch < m.epoch_of(d.thread_id)}
    checks = [_superseded(m, d, RECLAIMED_AFTER_INTERRUPT, now) for d in expired if d.dispatch_id in fenced]
    runs_before = {d.dispatch_id: m.runs[d.run_id] for d in expired}

    def then(records: list[DispatchRecord]) -> None:
        assert [r.dispatch_id for r in records] == [d.dispatch_id for d in expired if d.dispatch_id not in fenced]
        for check in checks:
            check(None)
        for d in expired:
            if d.dispatch_id in fenced:
                continue
            attempts, cleared = d.attempt_count + 1, {**CLEARED_CLAIM, **CLEARED_RUNTIME}
            if attempts >= d.max_attempts:
                record_is(m, d, now, status=DEAD, attempt_count=attempts, last_error=LEASE_EXHAUSTED, completed_at=now,
                          **cleared)  # fmt: skip
                run_before = runs_before[d.dispatch_id]
                run_ended(m, d.run_id, run_before.status is DONE, "error", LEASE_EXHAUSTED, before=run_before, now=now)
            else:
                record_is(m, d, now, status=QUEUED, attempt_count=attempts, available_at=now, completed_at=None,
                          **cleared)  # fmt: skip

    return succeed(then, writes=bool(expired))
