"""The Dispatch aggregate on its own: defaults, transitions, refusals and their events (spec A)."""

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from run_mailbox.domain import (
    ClaimTokenMismatch,
    Dispatch,
    DispatchRecord,
    DispatchStatus,
    InvalidTransition,
    RunStatus,
)
from run_mailbox.domain.policies import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY
from run_mailbox.domain.reasons import LEASE_EXHAUSTED as LEASE_EXHAUSTED_ERROR

TOKEN = "claim-1"
TERMINAL = [DispatchStatus.ACKED, DispatchStatus.CANCELLED, DispatchStatus.SUPERSEDED, DispatchStatus.DEAD_LETTER]


# ---------------------------------------------------------------- builders


def queued(*, max_attempts: int = DEFAULT_MAX_ATTEMPTS, created_at: int = 1_000) -> Dispatch:
    dispatch = Dispatch.enqueue(
        dispatch_id="d1",
        thread_id="thread-1",
        run_id="run-1",
        priority=DEFAULT_PRIORITY,
        dedupe_key=None,
        max_attempts=max_attempts,
        epoch=0,
        available_at=created_at,
        now=created_at,
    )
    dispatch.collect_events()
    return dispatch


def claimed(*, max_attempts: int = DEFAULT_MAX_ATTEMPTS, started: bool = False) -> Dispatch:
    """Claimed by consumer-1 at 1100 with lease_until 2000; started as runtime-1 at 1500 if asked."""
    dispatch = queued(max_attempts=max_attempts)
    dispatch.claim(consumer_id="consumer-1", claim_token=TOKEN, lease_until=2_000, now=1_100)
    if started:
        dispatch.record_start(claim_token=TOKEN, instance_id="runtime-1", now=1_500)
    dispatch.collect_events()
    return dispatch


def in_status(status: DispatchStatus) -> Dispatch:
    if status is DispatchStatus.QUEUED:
        return queued()
    dispatch = claimed(started=True)
    if status is DispatchStatus.ACKED:
        dispatch.ack(claim_token=TOKEN, now=3_000)
    elif status is DispatchStatus.CANCELLED:
        dispatch = queued()
        dispatch.cancel(now=3_000)
    elif status is DispatchStatus.SUPERSEDED:
        dispatch.supersede(reason="superseded by interrupt", now=3_000)
    elif status is DispatchStatus.DEAD_LETTER:
        dispatch.dead_letter(claim_token=TOKEN, error="permanent failure", now=3_000)
    dispatch.collect_events()
    assert dispatch.record.status is status
    return dispatch


def only_event(dispatch: Dispatch) -> Dispatch.Event:
    events = dispatch.collect_events()
    assert len(events) == 1, events
    (event,) = events
    assert event.dispatch == dispatch.record, "the event carries the post-transition record"
    return event


def assert_claim_cleared(record: DispatchRecord) -> None:
    assert (record.claim_token, record.claimed_by, record.lease_until) == (None, None, None)


# ---------------------------------------------------------------- creation and statuses


def test_a_new_dispatch_is_queued_with_the_documented_defaults():
    """Spec A1."""
    dispatch = Dispatch.enqueue(
        dispatch_id="d1",
        thread_id="thread-1",
        run_id="run-1",
        priority=DEFAULT_PRIORITY,
        dedupe_key=None,
        max_attempts=DEFAULT_MAX_ATTEMPTS,
        epoch=0,
        available_at=1_000,
        now=1_000,
    )
    record = dispatch.record
    assert (record.priority, record.max_attempts, record.attempt_count, record.dispatch_epoch) == (128, 5, 0, 0)
    assert record.status is DispatchStatus.QUEUED
    assert record.available_at == record.created_at == record.updated_at == 1_000
    assert_claim_cleared(record)
    assert (record.instance_id, record.run_status, record.completed_at, record.last_error) == (None,) * 4
    assert isinstance(only_event(dispatch), Dispatch.RunQueued)


@pytest.mark.parametrize("status", list(DispatchStatus))
def test_only_acked_cancelled_superseded_and_dead_lettered_dispatches_are_terminal(status):
    """Spec A2."""
    expected = status in TERMINAL
    assert status.is_terminal is expected
    assert in_status(status).record.is_terminal is expected


# ---------------------------------------------------------------- transitions


def test_a_claim_records_the_owner_and_an_ack_clears_it():
    """Spec A3."""
    dispatch = queued()
    dispatch.claim(consumer_id="consumer-1", claim_token=TOKEN, lease_until=2_000, now=1_100)
    record = dispatch.record
    assert (record.status, record.claimed_by, record.claim_token, record.lease_until) == (
        DispatchStatus.CLAIMED,
        "consumer-1",
        TOKEN,
        2_000,
    )
    dispatch.ack(claim_token=TOKEN, now=3_000)
    assert dispatch.record.status is DispatchStatus.ACKED
    assert dispatch.record.completed_at == 3_000
    assert_claim_cleared(dispatch.record)


def test_a_nack_requeues_and_clears_the_runtime_projection():
    """Spec A7."""
    dispatch = claimed(max_attempts=3, started=True)
    assert dispatch.nack(claim_token=TOKEN, error="temporary failure", now=1_600, retry_at=1_700) is True
    record = dispatch.record
    assert (record.status, record.attempt_count, record.available_at) == (DispatchStatus.QUEUED, 1, 1_700)
    assert (record.instance_id, record.run_status, record.completed_at) == (None, None, None)
    assert record.last_error == "temporary failure"
    assert_claim_cleared(record)


def test_an_expired_lease_requeues_and_clears_the_runtime_projection():
    """Spec A8."""
    dispatch = claimed(max_attempts=3, started=True)
    assert dispatch.expire_lease(now=2_100) is True
    record = dispatch.record
    assert (record.status, record.attempt_count, record.available_at) == (DispatchStatus.QUEUED, 1, 2_100)
    assert (record.instance_id, record.run_status, record.completed_at) == (None, None, None)
    assert_claim_cleared(record)


def test_an_expired_lease_on_the_last_attempt_dead_letters_and_clears_the_runtime_projection():
    """Spec A9, A16."""
    dispatch = claimed(max_attempts=1, started=True)
    assert dispatch.expire_lease(now=2_100) is False
    record = dispatch.record
    assert (record.status, record.completed_at, record.attempt_count) == (DispatchStatus.DEAD_LETTER, 2_100, 1)
    assert record.last_error == LEASE_EXHAUSTED_ERROR == "lease expired; max attempts reached"
    assert (record.instance_id, record.run_status) == (None, None)
    assert_claim_cleared(record)


@pytest.mark.parametrize("status", [DispatchStatus.QUEUED, DispatchStatus.CLAIMED])
def test_an_open_dispatch_can_be_superseded_which_clears_its_claim_and_runtime(status):
    """Spec A11: a queued one, and a claimed one through the epoch fence's supersede."""
    dispatch = in_status(status)
    dispatch.supersede(reason="claimed dispatch superseded by newer dispatch epoch", now=1_300)
    record = dispatch.record
    assert (record.status, record.completed_at) == (DispatchStatus.SUPERSEDED, 1_300)
    assert record.last_error == "claimed dispatch superseded by newer dispatch epoch"
    assert (record.instance_id, record.run_status) == (None, None)
    assert_claim_cleared(record)
    assert only_event(dispatch).reason == record.last_error


def test_an_acked_dispatch_keeps_its_runtime_trace_and_marks_the_run_done():
    """Spec A21: the projection survives the ack, with run_status Done."""
    dispatch = claimed(started=True)
    dispatch.ack(claim_token=TOKEN, now=2_000)
    assert (dispatch.record.instance_id, dispatch.record.run_status) == ("runtime-1", RunStatus.DONE)


@pytest.mark.parametrize("status", [DispatchStatus.CLAIMED, DispatchStatus.ACKED, DispatchStatus.DEAD_LETTER])
def test_a_dispatch_record_survives_a_json_round_trip(status):
    """Spec A12, A14: a started (and then finished) dispatch keeps every field."""
    record = in_status(status).record
    assert DispatchRecord.model_validate_json(record.model_dump_json()) == record


# ---------------------------------------------------------------- one event per transition

Action = Callable[[Dispatch], object]

TRANSITIONS: list[tuple[str, DispatchStatus, Action, type, DispatchStatus]] = [
    (
        "claim",
        DispatchStatus.QUEUED,
        lambda d: d.claim(consumer_id="c", claim_token=TOKEN, lease_until=2_000, now=1_100),
        Dispatch.DispatchClaimed,
        DispatchStatus.CLAIMED,
    ),
    (
        "extend_lease",
        DispatchStatus.CLAIMED,
        lambda d: d.extend_lease(claim_token=TOKEN, lease_until=9_000, now=1_600),
        Dispatch.LeaseExtended,
        DispatchStatus.CLAIMED,
    ),
    (
        "record_start",
        DispatchStatus.CLAIMED,
        lambda d: d.record_start(claim_token=TOKEN, instance_id="i-2", now=1_600),
        Dispatch.RunSubmitted,
        DispatchStatus.CLAIMED,
    ),
    (
        "ack",
        DispatchStatus.CLAIMED,
        lambda d: d.ack(claim_token=TOKEN, now=1_600),
        Dispatch.DispatchAcked,
        DispatchStatus.ACKED,
    ),
    (
        "nack",
        DispatchStatus.CLAIMED,
        lambda d: d.nack(claim_token=TOKEN, error="e", now=1_600, retry_at=None),
        Dispatch.RunRescheduled,
        DispatchStatus.QUEUED,
    ),
    (
        "dead_letter",
        DispatchStatus.CLAIMED,
        lambda d: d.dead_letter(claim_token=TOKEN, error="e", now=1_600),
        Dispatch.DispatchDeadLettered,
        DispatchStatus.DEAD_LETTER,
    ),
    (
        "expire_lease",
        DispatchStatus.CLAIMED,
        lambda d: d.expire_lease(now=2_001),
        Dispatch.RunRescheduled,
        DispatchStatus.QUEUED,
    ),
    ("cancel", DispatchStatus.QUEUED, lambda d: d.cancel(now=1_600), Dispatch.RunCancelled, DispatchStatus.CANCELLED),
    (
        "supersede",
        DispatchStatus.QUEUED,
        lambda d: d.supersede(reason="r", now=1_600),
        Dispatch.RunSuperseded,
        DispatchStatus.SUPERSEDED,
    ),
    (
        "interrupt",
        DispatchStatus.CLAIMED,
        lambda d: d.interrupt(new_epoch=1, now=1_600),
        Dispatch.RunInterrupted,
        DispatchStatus.CLAIMED,
    ),
]


@pytest.mark.parametrize(
    ("start", "action", "event_class", "end"), [t[1:] for t in TRANSITIONS], ids=[t[0] for t in TRANSITIONS]
)
def test_each_transition_raises_exactly_one_event_of_its_kind(start, action, event_class, end):
    dispatch = in_status(start)
    version = dispatch.version
    action(dispatch)
    event = only_event(dispatch)
    assert type(event) is event_class
    assert dispatch.version == version + 1
    assert dispatch.record.status == end


@pytest.mark.parametrize(
    ("max_attempts", "action", "fact"),
    [
        (3, lambda d: d.nack(claim_token=TOKEN, error="e", now=1_600, retry_at=None), ("reason", "retry_backoff")),
        (1, lambda d: d.nack(claim_token=TOKEN, error="e", now=1_600, retry_at=None), ("reason", "attempts_exhausted")),
        (3, lambda d: d.expire_lease(now=2_001), ("reason", "expired_lease_reclaimed")),
        (1, lambda d: d.expire_lease(now=2_001), ("reason", "lease_expired")),
        (3, lambda d: d.dead_letter(claim_token=TOKEN, error="e", now=1_600), ("reason", "permanent_failure")),
    ],
)
def test_a_requeue_or_dead_letter_event_states_why(max_attempts, action, fact):
    dispatch = claimed(max_attempts=max_attempts)
    action(dispatch)
    name, value = fact
    assert getattr(only_event(dispatch), name) == value


# ---------------------------------------------------------------- refusals

REFUSALS: list[tuple[str, DispatchStatus, Action, type, str]] = [
    *[
        (
            f"claim-{s}",
            s,
            lambda d: d.claim(consumer_id="c", claim_token="t2", lease_until=9_000, now=4_000),
            InvalidTransition,
            "must be Queued",
        )
        for s in [DispatchStatus.CLAIMED, *TERMINAL]
    ],
    *[
        (f"cancel-{s}", s, lambda d: d.cancel(now=4_000), InvalidTransition, "must be Queued")
        for s in [DispatchStatus.CLAIMED, *TERMINAL]
    ],
    *[
        (f"{name}-{s}", s, action, InvalidTransition, "must be Claimed")
        for s in [DispatchStatus.QUEUED, *TERMINAL]
        for name, action in [
            ("ack", lambda d: d.ack(claim_token=TOKEN, now=4_000)),
            ("nack", lambda d: d.nack(claim_token=TOKEN, error="e", now=4_000, retry_at=None)),
            ("dead_letter", lambda d: d.dead_letter(claim_token=TOKEN, error="e", now=4_000)),
            ("expire_lease", lambda d: d.expire_lease(now=4_000)),
            ("extend_lease", lambda d: d.extend_lease(claim_token=TOKEN, lease_until=9_000, now=4_000)),
            ("record_start", lambda d: d.record_start(claim_token=TOKEN, instance_id="i", now=4_000)),
            ("interrupt", lambda d: d.interrupt(new_epoch=1, now=4_000)),
        ]
    ],
    *[
        (f"{name}-wrong-token", DispatchStatus.CLAIMED, action, ClaimTokenMismatch, "does not own")
        for name, action in [
            ("ack", lambda d: d.ack(claim_token="stale", now=1_600)),
            ("nack", lambda d: d.nack(claim_token="stale", error="e", now=1_600, retry_at=None)),
            ("dead_letter", lambda d: d.dead_letter(claim_token="stale", error="e", now=1_600)),
            ("extend_lease", lambda d: d.extend_lease(claim_token="stale", lease_until=9_000, now=1_600)),
            ("record_start", lambda d: d.record_start(claim_token="stale", instance_id="i", now=1_600)),
        ]
    ],
    ("expire-at-lease-end", DispatchStatus.CLAIMED, lambda d: d.expire_lease(now=2_000), InvalidTransition, "lease"),
    *[
        (f"supersede-{s}", s, lambda d: d.supersede(reason="r", now=4_000), InvalidTransition, "must be Queued or")
        for s in TERMINAL
    ],
]


@pytest.mark.parametrize(
    ("start", "action", "error", "wording"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_a_refused_transition_raises_the_spec_wording_and_no_event(start, action, error, wording):
    """Spec A4, A5, A6, A11, C73, C74: refusals name the required state and change nothing."""
    dispatch = in_status(start)
    before, version = dispatch.record, dispatch.version
    with pytest.raises(error, match=wording):
        action(dispatch)
    assert dispatch.collect_events() == []
    assert (dispatch.record, dispatch.version) == (before, version)


# ---------------------------------------------------------------- property

OPERATIONS = ["claim", "extend", "start", "ack", "nack", "nack_retry", "dead_letter", "expire", "cancel", "supersede"]


def apply(dispatch: Dispatch, operation: str, token: str, now: int) -> None:
    calls: dict[str, Callable[[], object]] = {
        "claim": lambda: dispatch.claim(consumer_id="c", claim_token=f"claim-{now}", lease_until=now + 100, now=now),
        "extend": lambda: dispatch.extend_lease(claim_token=token, lease_until=now + 100, now=now),
        "start": lambda: dispatch.record_start(claim_token=token, instance_id=f"i-{now}", now=now),
        "ack": lambda: dispatch.ack(claim_token=token, now=now),
        "nack": lambda: dispatch.nack(claim_token=token, error="e", now=now, retry_at=None),
        "nack_retry": lambda: dispatch.nack(claim_token=token, error="e", now=now, retry_at=now),
        "dead_letter": lambda: dispatch.dead_letter(claim_token=token, error="e", now=now),
        "expire": lambda: dispatch.expire_lease(now=now),
        "cancel": lambda: dispatch.cancel(now=now),
        "supersede": lambda: dispatch.supersede(reason="r", now=now),
    }
    calls[operation]()


@given(
    max_attempts=st.integers(min_value=1, max_value=4),
    steps=st.lists(st.tuples(st.sampled_from(OPERATIONS), st.booleans(), st.integers(1, 200)), max_size=30),
)
def test_a_claimed_dispatch_always_has_a_claim_token_and_a_queued_one_never_does(max_attempts, steps):
    """Spec A14 (also: every reachable record survives a JSON round trip)."""
    dispatch = queued(max_attempts=max_attempts)
    now = 1_000
    for operation, right_token, elapsed in steps:
        now += elapsed
        token = (dispatch.record.claim_token or "none") if right_token else "stranger"
        version = dispatch.version
        try:
            apply(dispatch, operation, token, now)
        except InvalidTransition:
            assert dispatch.collect_events() == []
            assert dispatch.version == version
        else:
            assert len(dispatch.collect_events()) == 1
        record = dispatch.record
        claim = (record.claim_token, record.claimed_by, record.lease_until)
        if record.status is DispatchStatus.CLAIMED:
            assert None not in claim
        else:
            assert claim == (None, None, None)
        if record.status is DispatchStatus.QUEUED:
            assert (record.instance_id, record.run_status, record.completed_at) == (None, None, None)
        assert (record.completed_at is not None) is record.is_terminal
        assert record.attempt_count <= max_attempts
        assert DispatchRecord.model_validate_json(record.model_dump_json()) == record
