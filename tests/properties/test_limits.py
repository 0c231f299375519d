"""Every documented limit at its boundary: the last value accepted, the first one refused.

The machine draws small, mostly valid values; the limits themselves (identifier and text
lengths, priority, attempts, lease, batch sizes, messages per commit, the seq bound, the largest
time) are met here, each at ``bound - 1``, ``bound`` and ``bound + 1`` (or the lower bound's
neighbours), against the spec's numbers written out in this file: all of them, every run (60
cases), rather than a sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any
from uuid import RFC_4122, UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from run_mailbox.domain.errors import InvalidArgument, SeqConflict
from run_mailbox.domain.ids import new_id
from run_mailbox.infrastructure.service import MailboxService

MAX_ID, MAX_TEXT, MAX_MILLIS = 256, 16_384, 253_402_300_799_999


def _service() -> MailboxService:
    return MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=lambda: 1_000)


def _claimed(s: MailboxService) -> Any:
    s.submit("t", "r", dispatch_id="d")
    return s.claim("t", consumer_id="w")


def _messages(n: int) -> list[dict[str, Any]]:
    return [{"message_id": f"m{i}", "role": "user", "content": [{"type": "text", "text": "hi"}]} for i in range(n)]


# name: (lowest accepted, highest accepted, issue the command with the value)
LIMITS: dict[str, tuple[int, int, Callable[[MailboxService, int], Any]]] = {
    "thread id length": (1, MAX_ID, lambda s, n: s.submit("t" * n, "r")),
    "priority": (0, 255, lambda s, n: s.submit("t", "r", priority=n)),
    "max_attempts": (1, 1_000, lambda s, n: s.submit("t", "r", max_attempts=n)),
    "available_at": (0, MAX_MILLIS, lambda s, n: s.submit("t", "r", available_at=n)),
    "lease_ms": (1, 24 * 60 * 60 * 1000, lambda s, n: (s.submit("t", "r"), s.claim("t", consumer_id="w", lease_ms=n))),
    "claim_next limit": (1, 10_000, lambda s, n: s.claim_next(consumer_id="w", limit=n)),
    "sweep limit": (1, 10_000, lambda s, n: s.reclaim_expired_leases(limit=n)),
    "error length": (1, MAX_TEXT, lambda s, n: s.dead_letter("d", claim_token=_claimed(s).claim_token, error="e" * n)),
    "messages per commit": (
        1,
        1_000,
        lambda s, n: (s.submit("t", "r"), s.commit_messages("t", "r", _messages(n))),
    ),
    "expected_first_seq": (
        1,
        2**62,
        lambda s, n: (s.submit("t", "r"), s.commit_messages("t", "r", _messages(1), expected_first_seq=n)),
    ),
}


@pytest.mark.parametrize("offset", [-1, 0, 1])
@pytest.mark.parametrize("end", ["low", "high"])
@pytest.mark.parametrize("name", sorted(LIMITS))
def test_each_limit_accepts_its_bound_and_refuses_the_next_value(name: str, end: str, offset: int) -> None:
    low, high, issue = LIMITS[name]
    value = (low if end == "low" else high) + offset
    if name == "thread id length" and value < 1:
        return  # a blank id is refused elsewhere in the properties
    if name in ("messages per commit", "error length", "thread id length") and value > high + 1:
        return
    service = _service()
    try:
        issue(service, value)
    except SeqConflict:
        assert name == "expected_first_seq" and low < value <= high, value  # in range: only the seq is wrong
    except InvalidArgument:
        assert not low <= value <= high, f"{name}={value} is within {low}..{high} yet refused"
    else:
        assert low <= value <= high, f"{name}={value} is outside {low}..{high} yet accepted"
    finally:
        service.close()


def test_a_sweep_without_a_limit_reclaims_at_most_100_expired_leases() -> None:
    """The sweep's default batch is 100 (policies): the 101st expired lease waits for the next sweep."""
    service = _service()
    for i in range(101):
        service.submit(f"t{i}", f"r{i}", now=1_000)
        service.claim(f"t{i}", consumer_id="w", lease_ms=1, now=1_000)
    assert len(service.reclaim_expired_leases(now=2_000)) == 100
    assert len(service.reclaim_expired_leases(now=2_000)) == 1
    service.close()


@settings(max_examples=20, deadline=None)
@given(count=st.integers(1, 50))
def test_generated_ids_are_uuid7_stamped_with_the_time_they_were_made(count: int) -> None:
    """A dispatch id the caller does not give is a UUIDv7 (RFC 9562): version 7, variant 10, its
    first 48 bits the Unix time in ms when it was made, and distinct from every other id."""
    before = time.time_ns() // 1_000_000
    made = [new_id() for _ in range(count)]
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == count
    for text in made:
        value = UUID(text)
        assert (value.version, value.variant) == (7, RFC_4122), text
        assert before <= value.int >> 80 <= after, text


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_dispatch("d", version=True),
        lambda s: s.canonical_events(after=True),
        lambda s: s.canonical_events(limit=True),
        lambda s: s.submit("t", "r", priority=True),
        lambda s: s.suspend(
            "d", claim_token=_claimed(s).claim_token, tickets=[{"tool_call_id": "c", "tool_name": "x", "extra": 1}]
        ),
        lambda s: s.commit_messages("t", "r", [{**_messages(1)[0], "extra": 1}]),
    ],
    ids=["version-bool", "after-bool", "limit-bool", "priority-bool", "ticket-extra-field", "message-extra-field"],
)
def test_booleans_for_integers_and_unknown_fields_are_refused(call: Callable[[MailboxService], Any]) -> None:
    """A JSON boolean is not an integer, and a value object takes no field it does not define."""
    service = _service()
    try:
        with pytest.raises(InvalidArgument):
            call(service)
    finally:
        service.close()
