"""Expectations the oracle hands the machine: the refusal (exact type) or the checks of a result.

The ``last_error`` texts are the spec's (payloads.md, "last_error strings written by the store").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from run_mailbox.domain.errors import DispatchSuperseded, IdempotencyConflict, ResumeFailed
from run_mailbox.domain.values import DispatchStatus, RunStatus, TerminationReason
from tests.properties._model import Model

QUEUED, CLAIMED, ACKED = DispatchStatus.QUEUED, DispatchStatus.CLAIMED, DispatchStatus.ACKED
CANCELLED, SUPERSEDED, DEAD = DispatchStatus.CANCELLED, DispatchStatus.SUPERSEDED, DispatchStatus.DEAD_LETTER
DONE, RUNNING, WAITING = RunStatus.DONE, RunStatus.RUNNING, RunStatus.WAITING

# last_error texts of the spec (payloads.md, "last_error strings written by the store")
FENCED = {
    "extend_lease": "claimed dispatch superseded during lease renewal",
    "record_start": "claimed dispatch superseded before runtime start",
    "ack": "claimed dispatch superseded by newer dispatch epoch",
    "nack": "claimed dispatch superseded before nack",
    "dead_letter": "claimed dispatch superseded before dead letter",
    "suspend": "claimed dispatch superseded before suspend",  # our own command; same pattern
}
RECLAIMED_AFTER_INTERRUPT = "claimed dispatch lease expired after interrupt"
LEASE_EXHAUSTED = "lease expired; max attempts reached"
INTERRUPTED_QUEUED = "queued dispatch superseded by interrupt"
RUN_FINISHED_FIRST = "queued dispatch superseded: its run finished first"  # finish_run of a queued run
MAX_LEASE_MS = 24 * 60 * 60 * 1000

Check = Callable[[Any], None]


@dataclass(frozen=True)
class Expect:
    refusal: tuple[type[Exception], ...] = ()  # exact types; empty = must succeed
    writes: bool | None = None  # must (True) / must not (False) write events; None = either
    then: Check | None = None  # checks the result (or the refusal) against the refreshed model
    why: str = ""


def refuse(error: type[Exception], why: str, then: Check | None = None) -> Expect:
    writes = error in (DispatchSuperseded, ResumeFailed)  # the two documented refusals that write
    return Expect(refusal=(error,), writes=writes, then=then, why=why)


def succeed(then: Check | None = None, *, writes: bool | None = True, why: str = "") -> Expect:
    return Expect(then=then, writes=writes, why=why)


def returns(value: Any, why: str) -> Expect:
    def then(result: Any) -> None:
        assert result == value, f"returned {result!r}, expected {value!r} ({why})"

    return succeed(then, writes=False, why=why)


def is_id(value: Any) -> bool:
    return isinstance(value, str) and value != "" and value == value.strip() and value.isprintable()


def backoff(failures: int) -> int:
    """Spec Z4: 250 ms x 2^(n-1) after the n-th failure, capped at 30 s."""
    return min(250 << (failures - 1), 30_000)


def same(record: Any, **expected: Any) -> None:
    for name, value in expected.items():
        actual = getattr(record, name)
        assert actual == value, f"{type(record).__name__} {name}={actual!r}, expected {value!r} in {record}"


CLEARED_CLAIM: dict[str, Any] = {"claim_token": None, "claimed_by": None, "lease_until": None}
CLEARED_RUNTIME: dict[str, Any] = {"instance_id": None, "run_status": None}


def record_is(m: Model, before: Any, now: int | None, **changes: Any) -> None:
    """The whole record now held for ``before``'s aggregate is ``before`` with exactly these
    changes (and ``updated_at=now`` unless ``now`` is None: nothing written)."""
    if now is not None:
        changes["updated_at"] = now
    expected = before.model_copy(update=changes)
    if hasattr(before, "dispatch_id") and not hasattr(before, "agent_id"):
        actual, name = m.dispatches[before.dispatch_id], ("dispatch", before.dispatch_id)
    else:
        actual, name = m.runs[before.run_id], ("run", before.run_id)
    if actual != expected:
        fields = [f for f in type(before).model_fields if getattr(actual, f) != getattr(expected, f)]
        wrong = {f: (getattr(actual, f), getattr(expected, f)) for f in fields}
        raise AssertionError(f"{name[0]} {name[1]}: (held, expected) differ in {wrong}")
    m.checked.add(name)


def run_started(m: Model, run_before: Any, dispatch_id: str, now: int) -> None:
    """The run is running for ``dispatch_id``: unchanged when it already was, else started now
    (``started_at`` kept from its first start)."""
    if run_before.status is RUNNING and run_before.dispatch_id == dispatch_id:
        record_is(m, run_before, None)
    else:
        started = now if run_before.started_at is None else run_before.started_at
        record_is(m, run_before, now, status=RUNNING, waiting_reason=None, dispatch_id=dispatch_id, started_at=started)


def run_ended(m: Model, run_id: str, was_done: bool, termination: str, error: str | None = None, *,
              before: Any = None, now: int | None = None) -> None:  # fmt: skip
    run = m.runs[run_id]
    assert run.status is DONE, f"run {run_id} should be done, is {run.status}"
    if not was_done:
        assert run.termination is not None and run.termination.type == termination, run
        if error is not None:
            assert run.error == error, run
        if before is not None and now is not None:
            value = error if termination == "error" else None
            ended = TerminationReason(type=termination, value=value)  # type: ignore[arg-type]
            record_is(m, before, now, status=DONE, termination=ended, error=error, finished_at=now)


def conflict(why: str) -> Expect:
    return Expect(refusal=(IdempotencyConflict,), writes=False, why=why)
