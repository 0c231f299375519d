"""Accepted means readable: every command refuses, naming the field and the limit, what could not be
stored and read back (times past the latest, nesting past the limit, non-JSON values, NUL, lone
surrogates, sizes past the limits), writes nothing when it does, and the limits are the host's."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from run_mailbox import AckItem, Limits, MailboxService, Submit, TerminationReason, ToolCallResume, ToolTicket
from run_mailbox.domain import InvalidArgument
from run_mailbox.domain.limits import CEILING, MiB
from run_mailbox.domain.values import MAX_MILLIS

T = "thread-1"
POPO = {"PERSISTENCE_MODULE": "eventsourcing.popo"}


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` levels of arrays and objects, alternating, around ``leaf``."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def started(service: MailboxService, run_id: str = "r1", dispatch_id: str = "d1") -> str:
    service.submit(T, run_id, dispatch_id=dispatch_id, now=1_000)
    token = service.claim_dispatch(dispatch_id, consumer_id="w", now=1_001).claim_token
    service.record_start(dispatch_id, claim_token=token, now=1_002)
    return token


def refused(service: MailboxService, call: Any, field: str, *reason_parts: str) -> InvalidArgument:
    before = service.recorder.max_notification_id()
    with pytest.raises(InvalidArgument) as refusal:
        call()
    assert refusal.value.field == field, str(refusal.value)
    for part in reason_parts:
        assert part in str(refusal.value), str(refusal.value)
    assert len(str(refusal.value)) < 400  # the value is shown shortened
    assert service.recorder.max_notification_id() == before
    return refusal.value


@pytest.fixture
def memory() -> Any:
    app = MailboxService(env=POPO)
    yield app
    app.close()


# ---------------------------------------------------------------------- derived times


@pytest.mark.parametrize("command", ["claim", "claim_dispatch", "claim_next"])
def test_a_claim_whose_lease_would_end_after_the_latest_time_is_refused(service, command):
    service.submit(T, "r1", dispatch_id="d1", now=1_000)
    target = {"claim": {"thread_id": T}, "claim_dispatch": {"dispatch_id": "d1"}, "claim_next": {}}[command]
    call = getattr(service, command)
    refused(service, lambda: call(**target, consumer_id="w", lease_ms=30_000, now=MAX_MILLIS - 29_999), "lease_ms")
    claimed = call(**target, consumer_id="w", lease_ms=30_000, now=MAX_MILLIS - 30_000)
    assert claimed
    assert service.get_dispatch("d1").lease_until == MAX_MILLIS
    assert service.list_dispatches(T)[0].lease_until == MAX_MILLIS
    assert len(service.canonical_events()) > 0


def test_extending_a_lease_past_the_latest_time_is_refused(service):
    token = started(service)
    refused(service, lambda: service.extend_lease("d1", claim_token=token, lease_ms=10, now=MAX_MILLIS - 9), "lease_ms")
    assert service.extend_lease("d1", claim_token=token, lease_ms=10, now=MAX_MILLIS - 10)
    assert service.get_dispatch("d1").lease_until == MAX_MILLIS


def test_a_nack_whose_retry_would_fall_after_the_latest_time_is_refused_unless_it_names_its_retry(service):
    token = started(service)
    refused(service, lambda: service.nack("d1", claim_token=token, error="e", now=MAX_MILLIS - 1), "now", "30000 ms")
    retried = service.nack("d1", claim_token=token, error="e", now=MAX_MILLIS - 1, retry_at=MAX_MILLIS)
    assert retried.available_at == MAX_MILLIS == service.get_dispatch("d1").available_at


def test_the_latest_availability_is_accepted_and_reads_back(service):
    service.submit(T, "r1", dispatch_id="d1", available_at=MAX_MILLIS, now=1_000)
    assert service.get_dispatch("d1").available_at == MAX_MILLIS


def test_the_service_clock_near_the_latest_time_cannot_poison_a_lease():
    app = MailboxService(env=POPO, clock=lambda: MAX_MILLIS - 5)
    app.submit(T, "r1", dispatch_id="d1")
    refused(app, lambda: app.claim(T, consumer_id="w"), "lease_ms", "passes the latest time")
    app.close()


# ---------------------------------------------------------------------- free JSON fields

JSON_FIELDS = {
    "tickets[0].arguments": lambda s, token, value: s.suspend(
        "d1", claim_token=token, tickets=[{"tool_call_id": "c1", "tool_name": "shell", "arguments": value}]
    ),
    "resume.result": lambda s, token, value: s.decide(
        "r2", "c1", {"decision_id": "x1", "action": "resume", "result": value}
    ),
    "termination.value": lambda s, token, value: s.finish_run("r1", {"type": "stopped", "value": value}),
    "messages[0].content[0].input": lambda s, token, value: s.commit_messages(
        T, "r1", [{"message_id": "m1", "role": "assistant", "content": [tool_use(value)]}]
    ),
}


def tool_use(value: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": "tu1", "name": "shell", "input": value}


@pytest.fixture
def waiting(memory) -> tuple[MailboxService, str]:
    """r1 running on d1 (its token returned); r2 waiting for a decision on c1."""
    token2 = started(memory, "r2", "d2")
    memory.suspend("d2", claim_token=token2, tickets=[ToolTicket(tool_call_id="c1", tool_name="shell")])
    return memory, started(memory, "r1", "d1")


def field_of(root: str, refusal: InvalidArgument) -> str:
    # A message's tool input is checked as part of the message (its path names the message).
    return refusal.field.replace("messages[0].content[0].input", root) if "messages" in root else refusal.field


@pytest.mark.parametrize("root", JSON_FIELDS)
@pytest.mark.parametrize("depth", [65, 129, 220, 1_000, 100_000])
def test_json_nested_past_the_limit_is_refused_cleanly(waiting, root, depth):
    service, token = waiting
    with pytest.raises(InvalidArgument) as refusal:
        JSON_FIELDS[root](service, token, nested(depth))
    assert refusal.value.field.startswith(root.split("[0].content")[0]), refusal.value
    assert "levels deep" in str(refusal.value) or "nested too deep" in str(refusal.value)
    if depth == 65:
        assert "max_json_depth" in str(refusal.value)


@pytest.mark.parametrize("root", JSON_FIELDS)
def test_json_at_the_depth_limit_is_accepted_and_reads_back(waiting, root):
    service, token = waiting
    depth = 64 - (3 if root.startswith("messages") else 0)  # a message's own levels count
    JSON_FIELDS[root](service, token, nested(depth))
    assert service.get_run("r1") and service.get_run("r2") and service.get_dispatch("d1")
    assert service.canonical_events(limit=1_000)


NOT_JSON = [
    ({1, 2}, "a set is not a JSON value"),
    ((1, 2), "not a JSON value"),
    (b"bytes", "not a JSON value"),
    (1 + 2j, "not a JSON value"),
    (object(), "not a JSON value"),
    (math.nan, "NaN and infinities are not JSON"),
    (math.inf, "NaN and infinities are not JSON"),
    (-math.inf, "NaN and infinities are not JSON"),
    (2**63, "64 bits"),
    (-(2**63) - 1, "64 bits"),
    ("a\x00b", "NUL"),
    ("a\ud800b", "lone surrogates"),
]


@pytest.mark.parametrize("root", JSON_FIELDS)
@pytest.mark.parametrize(("bad", "reason"), NOT_JSON, ids=[repr(case[0])[:12] for case in NOT_JSON])
def test_a_value_that_is_not_storable_json_is_refused_at_its_path(waiting, root, bad, reason):
    service, token = waiting
    before = service.recorder.max_notification_id()
    with pytest.raises(InvalidArgument) as refusal:
        JSON_FIELDS[root](service, token, {"ok": [1, "two", None], "deep": {"list": [0, bad]}})
    assert (
        reason in str(refusal.value) or "Input should be" in str(refusal.value) or "JSON value" in str(refusal.value)
    ), str(refusal.value)
    assert refusal.value.field.startswith(root), refusal.value
    assert service.recorder.max_notification_id() == before


@pytest.mark.parametrize("root", JSON_FIELDS)
@pytest.mark.parametrize("key", [1, ("a", 1), "k\x00", "k\udc80"])
def test_a_key_that_is_not_a_clean_string_is_refused(waiting, root, key):
    service, token = waiting
    with pytest.raises(InvalidArgument) as refusal:
        JSON_FIELDS[root](service, token, {"outer": {key: 1}})
    assert refusal.value.field.startswith(root), refusal.value


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"type": "text", "text": "hi\x00"}, "messages[0].content[0].text"),
        ({"type": "thinking", "thinking": "\udfff"}, "messages[0].content[0].thinking"),
        ({"type": "image", "source": {"type": "url", "url": "http://x/\x00"}}, "messages[0].content[0].source.url"),
        (
            {"type": "document", "source": {"type": "base64", "media_type": "a/b", "data": "AA=="}, "title": "\ud800"},
            "messages[0].content[0].title",
        ),
        (
            {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "\x00"}]},
            "messages[0].content[0].content[0].text",
        ),
    ],
)
def test_nul_or_a_lone_surrogate_anywhere_in_a_message_is_refused_at_its_path(waiting, block, field):
    service, _ = waiting
    message = {"message_id": "m1", "role": "user", "content": [block]}
    refused(service, lambda: service.commit_messages(T, "r1", [message]), field)


@pytest.mark.parametrize(
    ("resume", "field"),
    [
        ({"decision_id": "x1", "action": "resume", "reason": "ok\x00"}, "resume.reason"),
        ({"decision_id": "x1", "action": "resume", "reason": "\ud800"}, "resume.reason"),
        ({"decision_id": "x1", "action": "resume", "reason": "r" * 16_385}, "resume.reason"),
        ({"decision_id": "x1", "action": "resume", "reason": b"bytes"}, "resume.reason"),
        ({"decision_id": "x1", "action": "resume", "updated_at": True}, "resume.updated_at"),
        ({"decision_id": "x1", "action": "resume", "updated_at": "5"}, "resume.updated_at"),
        ({"decision_id": "x1", "action": "resume", "updated_at": MAX_MILLIS + 1}, "resume.updated_at"),
    ],
)
def test_a_decision_s_reason_and_time_are_checked_like_every_argument(waiting, resume, field):
    service, _ = waiting
    refused(service, lambda: service.decide("r2", "c1", resume), field)


@pytest.mark.parametrize("priority", [-1, 256, True, "5", 5.0])
def test_a_decision_s_priority_is_an_integer_from_0_to_255(waiting, priority):
    service, _ = waiting
    resume = ToolCallResume(decision_id="x1", action="resume")
    refused(service, lambda: service.decide("r2", "c1", resume, priority=priority), "priority")


def test_a_blank_reason_is_still_accepted(waiting):
    service, _ = waiting
    service.decide("r2", "c1", {"decision_id": "x1", "action": "resume", "reason": ""})
    assert service.get_run("r2").decisions[0].resume.reason == ""


# ---------------------------------------------------------------------- sizes and counts


def message(text_bytes: int, message_id: str = "m1") -> dict[str, Any]:
    return {"message_id": message_id, "role": "user", "content": [{"type": "text", "text": "x" * text_bytes}]}


def test_a_message_larger_than_max_message_bytes_is_refused_naming_the_limit(waiting):
    service, _ = waiting
    refused(service, lambda: service.commit_messages(T, "r1", [message(MiB)]), "messages[0]", "max_message_bytes")
    service.commit_messages(T, "r1", [message(MiB - 200)])
    assert service.get_run("r1").checkpoints


def test_a_commit_larger_than_max_command_bytes_is_refused_naming_the_limit(waiting):
    service, _ = waiting
    five = [message(MiB - 200, f"m{i}") for i in range(5)]
    refused(service, lambda: service.commit_messages(T, "r1", five), "messages", "max_command_bytes")


def test_more_messages_than_allowed_in_one_commit_are_refused(waiting):
    service, _ = waiting
    many = [message(1, f"m{i}") for i in range(1_001)]
    refused(service, lambda: service.commit_messages(T, "r1", many), "messages", "max_messages_per_commit=1000")


def test_more_tickets_than_allowed_in_one_suspension_are_refused(waiting):
    service, token = waiting
    tickets = [ToolTicket(tool_call_id=f"c{i}", tool_name="shell") for i in range(101)]
    refused(service, lambda: service.suspend("d1", claim_token=token, tickets=tickets), "tickets", "max_tickets=100")
    service.suspend("d1", claim_token=token, tickets=tickets[:100])
    assert len(service.get_run("r1").tickets) == 100


@pytest.mark.parametrize("root", [root for root in JSON_FIELDS if not root.startswith("messages")])
def test_a_free_json_field_larger_than_max_json_bytes_is_refused(waiting, root):
    """(A message's tool input is bounded with its message, by max_message_bytes.)"""
    service, token = waiting
    refused(service, lambda: JSON_FIELDS[root](service, token, {"blob": "x" * 65_536}), root, "max_json_bytes=65536")


def test_a_shared_sub_list_repeated_exponentially_is_refused_quickly(waiting):
    service, token = waiting
    value: list[Any] = []
    for _ in range(60):
        value = [value, value]  # 2**60 leaves when expanded
    with pytest.raises(InvalidArgument):
        JSON_FIELDS["termination.value"](service, token, value)


# ---------------------------------------------------------------------- the host's limits


def test_a_host_can_lower_and_raise_the_limits():
    strict = MailboxService(env=POPO, limits=Limits(max_json_depth=4, max_message_bytes=2 * MiB))
    token = started(strict)
    refused(
        strict, lambda: strict.finish_run("r1", TerminationReason(type="stopped", value=nested(5))), "termination.value"
    )
    strict.commit_messages(T, "r1", [message(MiB + 10)])  # past the default, within this host's limit
    strict.finish_run("r1", TerminationReason(type="stopped", value=nested(4)))
    assert strict.get_run("r1").termination.value == nested(4)
    assert token
    strict.close()


def test_the_limits_can_be_set_from_the_environment():
    app = MailboxService(env={**POPO, "MAILBOX_MAX_TICKETS": "2", "MAILBOX_MAX_ID_CHARS": "40"})
    assert (app.limits.max_tickets, app.limits.max_id_chars) == (2, 40)
    refused(app, lambda: app.submit(T, "r" * 41), "run_id", "max_id_chars=40")
    token = started(app)
    tickets = [ToolTicket(tool_call_id=f"c{i}", tool_name="t") for i in range(3)]
    refused(app, lambda: app.suspend("d1", claim_token=token, tickets=tickets), "tickets", "max_tickets=2")
    app.close()


def test_a_limit_from_the_environment_may_group_its_digits_with_underscores():
    """``4_194_304`` and ``4__194304`` read as 4194304 (Python's ``int`` refuses the second); blanks around it
    are ignored; anything else that is not a whole number is refused naming the variable."""
    for raw in ("4_194_304", "4__194304", " 4194304 ", "_4194304_"):
        assert Limits.from_env({"MAILBOX_MAX_MESSAGE_BYTES": raw}).max_message_bytes == 4_194_304, raw
    with pytest.raises(InvalidArgument, match="MAILBOX_MAX_MESSAGE_BYTES"):
        Limits.from_env({"MAILBOX_MAX_MESSAGE_BYTES": "4,194,304"})


def test_the_batch_commands_are_held_to_the_host_s_limits_item_by_item():
    app = MailboxService(env={**POPO, "MAILBOX_MAX_ID_CHARS": "40"})
    runs = [Submit(T, "r1"), Submit(T, "r" * 41)]
    refused(app, lambda: app.submit_many(runs), "runs[1].run_id", "max_id_chars=40")
    (record,) = app.submit_many([Submit(T, "r1")])
    claimed = app.claim(T, consumer_id="w")
    assert claimed is not None and claimed.claim_token is not None
    acks = [AckItem(claimed.dispatch_id, claim_token=claimed.claim_token), AckItem("d" * 41, claim_token="t")]
    refused(app, lambda: app.ack_many(acks), "acks[1].dispatch_id", "max_id_chars=40")
    assert app.get_dispatch(record.dispatch_id).status == "claimed"
    app.close()


def test_no_limit_can_be_set_past_its_ceiling():
    with pytest.raises(ValidationError):
        Limits(max_json_depth=CEILING.max_json_depth + 1)
    with pytest.raises(ValidationError):
        Limits(max_text_chars=16_385)
    with pytest.raises(ValidationError):
        Limits(max_tickets=0)
    assert Limits() == Limits.from_env({})
    assert CEILING.max_json_depth == 128 and CEILING.max_message_bytes == 16 * MiB
