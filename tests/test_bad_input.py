"""Every command refuses malformed input with a typed error and leaves the store unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from run_mailbox.domain import ClaimTokenMismatch, DispatchNotFound, InvalidArgument, InvalidTransition

QUEUED_THREAD, CLAIMED_THREAD = "thread-q", "thread-c"
TOKEN = object()  # replaced by the real claim token of d2

VALID: dict[str, dict[str, Any]] = {
    "submit": {"thread_id": QUEUED_THREAD, "run_id": "r-new"},
    "claim": {"thread_id": QUEUED_THREAD, "consumer_id": "c"},
    "claim_dispatch": {"dispatch_id": "d1", "consumer_id": "c"},
    "extend_lease": {"dispatch_id": "d2", "claim_token": TOKEN, "lease_ms": 1_000},
    "record_start": {"dispatch_id": "d2", "claim_token": TOKEN},
    "ack": {"dispatch_id": "d2", "claim_token": TOKEN},
    "nack": {"dispatch_id": "d2", "claim_token": TOKEN, "error": "boom"},
    "dead_letter": {"dispatch_id": "d2", "claim_token": TOKEN, "error": "boom"},
    "cancel": {"dispatch_id": "d1"},
    "interrupt": {"thread_id": QUEUED_THREAD},
    "reclaim_expired_leases": {"limit": 10},
}

BAD_IDS = ["", "   ", " d1", "d1\t", "d\x001", "d\n1", "d\x7f1", "x" * 257, 17]
OPTIONAL_ID_FIELDS = {("submit", "dispatch_id"), ("submit", "dedupe_key"), ("record_start", "instance_id")}

ID_FIELDS = [
    ("submit", "thread_id"),
    ("submit", "run_id"),
    ("submit", "agent_id"),
    ("submit", "dispatch_id"),
    ("submit", "dedupe_key"),
    ("claim", "thread_id"),
    ("claim", "consumer_id"),
    ("claim_dispatch", "dispatch_id"),
    ("claim_dispatch", "consumer_id"),
    ("extend_lease", "claim_token"),
    ("record_start", "claim_token"),
    ("record_start", "instance_id"),
    ("ack", "dispatch_id"),
    ("nack", "claim_token"),
    ("dead_letter", "dispatch_id"),
    ("cancel", "dispatch_id"),
    ("interrupt", "thread_id"),
]

NUMBER_CASES = [
    ("submit", "priority", -1),
    ("submit", "priority", 256),
    ("submit", "priority", True),
    ("submit", "priority", 1.0),
    ("submit", "priority", "1"),
    ("submit", "max_attempts", 0),
    ("submit", "max_attempts", -3),
    ("submit", "max_attempts", True),
    ("submit", "available_at", -1),
    ("submit", "available_at", False),
    ("claim", "lease_ms", 0),
    ("claim", "lease_ms", -1),
    ("claim", "lease_ms", 86_400_001),
    ("claim", "lease_ms", True),
    ("claim_dispatch", "lease_ms", 0),
    ("extend_lease", "lease_ms", -5),
    ("extend_lease", "lease_ms", 86_400_001),
    ("nack", "retry_at", -1),
    ("reclaim_expired_leases", "limit", 0),
    ("reclaim_expired_leases", "limit", 10_001),
    ("reclaim_expired_leases", "limit", True),
]

TEXT_CASES = [
    ("nack", "error", ""),
    ("nack", "error", "  "),
    ("nack", "error", "bad\x00error"),
    ("dead_letter", "error", "x" * 16_385),
    ("dead_letter", "error", None),
]

NOW_CASES = [(command, "now", value) for command in VALID for value in (-1, True)]
KEY_CASES = [
    (command, "idempotency_key", value) for command in ("submit", "ack", "interrupt") for value in ("", "k\x00")
]


@pytest.fixture
def world(service):
    """One queued dispatch d1 (run r1) and one claimed dispatch d2 (run r2) on another thread."""
    service.submit(QUEUED_THREAD, "r1", dispatch_id="d1", dedupe_key="dk")
    service.submit(CLAIMED_THREAD, "r2", dispatch_id="d2")
    claimed = service.claim(CLAIMED_THREAD, consumer_id="owner")
    return service, claimed.claim_token


def snapshot(service) -> tuple[Any, ...]:
    return (
        service.recorder.max_notification_id(),
        service.transactions,
        service.get_dispatch("d1"),
        service.get_dispatch("d2"),
        service.get_run("r1"),
        service.get_run("r2"),
        service.get_mailbox(QUEUED_THREAD),
        service.get_mailbox(CLAIMED_THREAD),
        service.count_by_status(),
    )


def call(service, token: str, command: str, **overrides: Any) -> Any:
    kwargs = {k: (token if v is TOKEN else v) for k, v in {**VALID[command], **overrides}.items()}
    return getattr(service, command)(**kwargs)


def assert_refused(world, command: str, field: str, value: Any) -> None:
    service, token = world
    before = snapshot(service)
    try:
        call(service, token, command, **{field: value})
    except InvalidArgument as exc:
        refused = exc
    else:
        pytest.fail(f"{command}({field}={value!r}) was accepted")
    assert refused.field == field
    assert field in str(refused)
    assert snapshot(service) == before, f"{command}({field}={value!r}) changed the store"


@pytest.mark.parametrize(("command", "field"), ID_FIELDS)
def test_a_malformed_identifier_is_refused_naming_its_field(world, command, field):
    """Empty, blank, padded, NUL, control characters, over 256 characters, not a string."""
    for value in BAD_IDS:
        assert_refused(world, command, field, value)


@pytest.mark.parametrize(("command", "field"), sorted(set(ID_FIELDS) - OPTIONAL_ID_FIELDS))
def test_a_missing_required_identifier_is_refused_naming_its_field(world, command, field):
    assert_refused(world, command, field, None)


@pytest.mark.parametrize(("command", "field", "value"), NUMBER_CASES + TEXT_CASES + NOW_CASES + KEY_CASES)
def test_an_out_of_range_or_mistyped_argument_is_refused_naming_its_field(world, command, field, value):
    assert_refused(world, command, field, value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("priority", 0), ("priority", 255), ("max_attempts", 1), ("thread_id", "t" * 256), ("run_id", "r-é✓")],
)
def test_the_boundary_values_are_accepted(world, field, value):
    service, token = world
    submitted = call(service, token, "submit", **{field: value})
    assert getattr(service.get_dispatch(submitted.dispatch_id), field) == value


def test_the_longest_lease_of_one_day_is_accepted(world):
    service, token = world
    assert service.extend_lease("d2", claim_token=token, lease_ms=86_400_000, now=5_000) is True
    assert service.get_dispatch("d2").lease_until == 86_405_000


@pytest.mark.parametrize("command", ["claim_dispatch", "extend_lease", "record_start", "ack", "nack", "dead_letter"])
def test_an_unknown_dispatch_id_is_refused_as_not_found(world, command):
    service, token = world
    before = snapshot(service)
    with pytest.raises(DispatchNotFound, match="d-missing"):
        call(service, token, command, dispatch_id="d-missing")
    assert snapshot(service) == before


def test_cancelling_or_reading_an_unknown_dispatch_is_refused_as_not_found(world):
    service, _ = world
    before = snapshot(service)
    with pytest.raises(DispatchNotFound):
        service.cancel("d-missing")
    with pytest.raises(DispatchNotFound):
        service.get_dispatch("d-missing")
    assert snapshot(service) == before


def test_claiming_an_unknown_thread_returns_none_and_writes_nothing(world):
    service, _ = world
    before = snapshot(service)
    assert service.claim("thread-unknown", consumer_id="c") is None
    assert service.get_mailbox("thread-unknown") is None
    assert snapshot(service) == before


@pytest.mark.parametrize("command", ["record_start", "ack", "nack", "dead_letter"])
def test_a_wrong_claim_token_is_refused_and_the_claim_is_kept(world, command):
    """73."""
    service, _ = world
    before = snapshot(service)
    with pytest.raises(ClaimTokenMismatch):
        call(service, "not-the-token", command)
    assert snapshot(service) == before


def test_extending_a_lease_with_a_wrong_token_returns_false_and_keeps_the_lease(world):
    """72."""
    service, _ = world
    before = snapshot(service)
    assert service.extend_lease("d2", claim_token="not-the-token", lease_ms=60_000) is False
    assert snapshot(service) == before


@pytest.mark.parametrize("command", ["record_start", "ack", "nack", "dead_letter"])
def test_an_owner_command_on_a_queued_dispatch_is_refused(world, command):
    service, token = world
    before = snapshot(service)
    with pytest.raises(InvalidTransition):
        call(service, token, command, dispatch_id="d1")
    assert snapshot(service) == before
