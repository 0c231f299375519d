"""Every documented limit at its boundary: the last value accepted, the first one refused.

The machine draws small, mostly valid values; the limits themselves (identifier and text
lengths, priority, attempts, lease, batch sizes, messages per commit, the seq bound, the largest
time) are met here, each at ``bound - 1``, ``bound`` and ``bound + 1`` (or the lower bound's
neighbours), against the spec's numbers written out in this file: all of them, every run (60
cases), rather than a sample. Then the bad values the machine's vocabulary never draws (a NUL in a
reason, an empty commit, times past the end of time, tickets past the command's total, integers past
int64, long keys and deep paths, malformed ids in queries): each refused by name, nothing written.
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
from run_mailbox.domain.preview import preview
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


def _token(s: MailboxService) -> str:
    return str(_claimed(s).claim_token)


def _wide_tickets(count: int, size: int) -> list[dict[str, Any]]:
    return [{"tool_call_id": f"c{i}", "tool_name": "shell", "arguments": {"text": "x" * size}} for i in range(count)]


def _started(s: MailboxService, token: str) -> None:
    s.record_start("d", claim_token=token)


def _second_thread(s: MailboxService, token: str) -> None:
    s.submit("t2", "r2")


def _nothing(s: MailboxService, token: str) -> None:
    pass


def _nested(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


def _suspend_with(s: MailboxService, token: str, arguments: Any) -> Any:
    return s.suspend("d", claim_token=token, tickets=[{"tool_call_id": "c", "tool_name": "x", "arguments": arguments}])


Issue = Callable[[MailboxService, str], Any]

# name: (prepare, then issue the bad command on a service holding the claimed dispatch "d" of run "r";
# the argument the refusal must name)
REFUSALS: dict[str, tuple[Issue, Issue, str]] = {
    "a NUL in a decision's reason": (
        _nothing,
        lambda s, _: s.decide("r", "c", {"decision_id": "x", "action": "resume", "reason": "a\x00b"}),
        "resume.reason",
    ),
    "a commit of no messages": (_nothing, lambda s, _: s.commit_messages("t", "r", []), "messages"),
    "a nack whose backoff passes the latest time": (
        _nothing,
        lambda s, token: s.nack("d", claim_token=token, error="e", now=MAX_MILLIS - 1),
        "now",
    ),
    "a claim whose lease passes the latest time": (
        _second_thread,
        lambda s, _: s.claim("t2", consumer_id="w", lease_ms=1_000, now=MAX_MILLIS - 10),
        "lease_ms",
    ),
    "a lease extended past the latest time": (
        _nothing,
        lambda s, token: s.extend_lease("d", claim_token=token, lease_ms=1_000, now=MAX_MILLIS - 10),
        "lease_ms",
    ),
    "tickets each within the JSON limit, together past the command's": (
        _started,
        lambda s, token: s.suspend("d", claim_token=token, tickets=_wide_tickets(70, 60_000)),
        "tickets",
    ),
    "a NUL under a key of 40 identifier characters": (
        _started,
        lambda s, token: _suspend_with(s, token, {"k" * 40: "a\x00"}),
        "tickets[0].arguments." + "k" * 40,
    ),
    "a NUL under a key of 41 identifier characters": (
        _started,
        lambda s, token: _suspend_with(s, token, {"k" * 41: "a\x00"}),
        f"tickets[0].arguments[{preview('k' * 41, 40)}]",
    ),
    "a NUL twelve levels down": (
        _started,
        lambda s, token: _suspend_with(s, token, _nested(["a\x00"], 11)),
        "tickets[0].arguments" + "[0]" * 12,
    ),
    "a NUL thirteen levels down (the path keeps both ends)": (
        _started,
        lambda s, token: _suspend_with(s, token, _nested(["a\x00"], 12)),
        "tickets[0].arguments" + "[0]" * 6 + "..." + "[0]" * 5,
    ),
    "an integer past int64 among plain integers": (
        _started,
        lambda s, token: s.suspend(
            "d", claim_token=token, tickets=[{"tool_call_id": "c", "tool_name": "x", "arguments": [1, 2**63]}]
        ),
        "tickets[0].arguments[1]",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_a_bad_value_is_refused_naming_its_argument_and_nothing_is_written(name: str) -> None:
    """Values the machine's vocabulary does not draw: each refused as ``InvalidArgument`` naming the
    argument, with the log as it was."""
    prepare, issue, field = REFUSALS[name]
    service = _service()
    try:
        token = _token(service)
        prepare(service, token)
        before = service.recorder.max_notification_id()
        with pytest.raises(InvalidArgument) as refused:
            issue(service, token)
        assert refused.value.field == field, refused.value
        assert service.recorder.max_notification_id() == before
    finally:
        service.close()


def test_a_value_that_repeats_a_list_is_accepted_and_measured_as_its_json() -> None:
    """The same list twice under one object is two copies in JSON: accepted when the copies fit the depth
    limit (64 levels), refused when one level more would pass it."""
    service = _service()
    try:
        token = _token(service)
        service.record_start("d", claim_token=token)
        fits = _nested([], 62)  # 63 levels, the object around them the 64th
        service.suspend("d", claim_token=token, tickets=[{"tool_call_id": "c", "tool_name": "x",
                        "arguments": {"a": fits, "b": fits}}])  # fmt: skip
        deeper = _nested([], 63)
        with pytest.raises(InvalidArgument, match="deep"):
            _suspend_with(service, token, {"a": deeper, "b": deeper})
    finally:
        service.close()


@pytest.mark.parametrize("bad", ["", "a\x00b", "x" * (MAX_ID + 1)], ids=["blank", "nul", "too-long"])
@pytest.mark.parametrize("query", ["get_dispatch", "get_run", "get_mailbox", "list_dispatches"])
def test_a_query_refuses_a_malformed_id_naming_it(query: str, bad: str) -> None:
    """A read is held to the identifier rules too: InvalidArgument naming the id, not NotFound."""
    field = {"get_dispatch": "dispatch_id", "get_run": "run_id"}.get(query, "thread_id")
    service = _service()
    try:
        with pytest.raises(InvalidArgument) as refused:
            getattr(service, query)(bad)
        assert refused.value.field == field, refused.value
    finally:
        service.close()
