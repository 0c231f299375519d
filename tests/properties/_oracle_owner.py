"""The oracle for the claim owner's commands: extend_lease, record_start, ack, nack and dead_letter,
and the refusals every owner command shares (malformed, unknown, not claimed, wrong token, fenced)."""

from __future__ import annotations

from typing import Any

from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.errors import (
    ClaimTokenMismatch,
    DispatchNotFound,
    DispatchSuperseded,
    InvalidArgument,
    InvalidTransition,
)
from tests.properties._expect import (
    ACKED,
    CLAIMED,
    CLEARED_CLAIM,
    CLEARED_RUNTIME,
    DEAD,
    DONE,
    FENCED,
    MAX_LEASE_MS,
    QUEUED,
    RUNNING,
    SUPERSEDED,
    WAITING,
    Check,
    Expect,
    backoff,
    is_id,
    record_is,
    refuse,
    returns,
    run_ended,
    run_started,
    succeed,
)
from tests.properties._model import Model


def _superseded(m: Model, d: DispatchRecord, reason: str, now: int) -> Check:
    run_before = m.runs[d.run_id]
    was_done = run_before.status is DONE

    def then(_: Any) -> None:
        record_is(m, d, now, status=SUPERSEDED, last_error=reason, completed_at=now, **CLEARED_CLAIM, **CLEARED_RUNTIME)
        run_ended(m, d.run_id, was_done, "cancelled", before=run_before, now=now)

    return then


def owner_or_refusal(
    m: Model, now: int, command: str, kw: dict[str, Any]
) -> tuple[DispatchRecord | None, Expect | None]:
    """The dispatch the owner addresses, or the refusal the owner's command gets."""
    if not is_id(kw["dispatch_id"]) or not is_id(kw["claim_token"]):
        return None, refuse(InvalidArgument, "malformed argument")
    d = m.dispatches.get(kw["dispatch_id"])
    if d is None:
        return None, refuse(DispatchNotFound, "no such dispatch")
    if d.status is not CLAIMED:
        return d, refuse(InvalidTransition, f"the dispatch is {d.status.value}, must be claimed")
    if d.claim_token != kw["claim_token"]:
        return d, refuse(ClaimTokenMismatch, "the token does not own the dispatch")
    if d.dispatch_epoch < m.epoch_of(d.thread_id):
        return d, refuse(DispatchSuperseded, "an interrupt fenced the claim", _superseded(m, d, FENCED[command], now))
    return d, None


def extend_lease(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if not 1 <= kw["lease_ms"] <= MAX_LEASE_MS:
        return refuse(InvalidArgument, "malformed argument")
    d, refusal = owner_or_refusal(m, now, "extend_lease", kw)
    if refusal is None:
        assert d is not None

        def then(result: bool) -> None:
            assert result is True
            record_is(m, d, now, lease_until=now + kw["lease_ms"])

        return succeed(then)
    if refusal.refusal == (DispatchSuperseded,):  # the fence answers False instead of raising
        fenced = refusal.then
        assert fenced is not None

        def superseded(result: bool) -> None:
            assert result is False, "a fenced lease extension returns False"
            fenced(result)

        return succeed(superseded, why="fenced")
    if refusal.refusal in ((InvalidTransition,), (ClaimTokenMismatch,)):
        return returns(False, "the token does not own the dispatch")
    return refusal


def record_start(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    d, refusal = owner_or_refusal(m, now, "record_start", kw)
    if refusal is not None:
        return refusal
    assert d is not None
    if m.runs[d.run_id].status is DONE:
        return refuse(InvalidTransition, "the run is done")

    run_before = m.runs[d.run_id]

    def then(record: DispatchRecord) -> None:
        instance = kw["instance_id"] or f"{d.dispatch_id}/{d.attempt_count + 1}"
        record_is(m, d, now, run_status=RUNNING, instance_id=instance)
        run_started(m, run_before, d.dispatch_id, now)

    return succeed(then)


def ack(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    d, refusal = owner_or_refusal(m, now, "ack", kw)
    if refusal is not None:
        return refusal
    assert d is not None
    run_before = m.runs[d.run_id]

    def then(record: DispatchRecord) -> None:
        run_status = DONE if d.run_status is RUNNING else d.run_status
        record_is(m, d, now, status=ACKED, completed_at=now, run_status=run_status, **CLEARED_CLAIM)
        if run_before.status is WAITING:
            record_is(m, run_before, None)
        else:
            run_ended(m, d.run_id, run_before.status is DONE, "natural_end", before=run_before, now=now)

    return succeed(then)


def nack(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if not kw["error"].strip() or (kw["retry_at"] is not None and kw["retry_at"] < 0):
        return refuse(InvalidArgument, "malformed argument")
    d, refusal = owner_or_refusal(m, now, "nack", kw)
    if refusal is not None:
        return refusal
    assert d is not None
    attempts, run_before = d.attempt_count + 1, m.runs[d.run_id]
    cleared = {**CLEARED_CLAIM, **CLEARED_RUNTIME, "attempt_count": attempts, "last_error": kw["error"]}

    def then(record: DispatchRecord) -> None:
        if attempts >= d.max_attempts:
            record_is(m, d, now, status=DEAD, completed_at=now, **cleared)
            run_ended(m, d.run_id, run_before.status is DONE, "error", kw["error"], before=run_before, now=now)
        else:
            due = kw["retry_at"] if kw["retry_at"] is not None else now + backoff(attempts)
            record_is(m, d, now, status=QUEUED, available_at=due, completed_at=None, **cleared)

    return succeed(then)


def dead_letter(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if not kw["error"].strip():
        return refuse(InvalidArgument, "malformed argument")
    d, refusal = owner_or_refusal(m, now, "dead_letter", kw)
    if refusal is not None:
        return refusal
    assert d is not None
    run_before = m.runs[d.run_id]

    def then(record: DispatchRecord) -> None:
        record_is(m, d, now, status=DEAD, last_error=kw["error"], completed_at=now, **CLEARED_CLAIM, **CLEARED_RUNTIME)
        run_ended(m, d.run_id, run_before.status is DONE, "error", kw["error"], before=run_before, now=now)

    return succeed(then)
