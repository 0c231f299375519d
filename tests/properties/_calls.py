"""Argument sets the machine builds: commands on unknown or blank ids, and the variations of an
earlier command re-issued under its idempotency key."""

from __future__ import annotations

from typing import Any

from run_mailbox.domain.permissions import ToolCallResume
from tests.properties._model import Keyed, Model


def ticket(tool_call_id: str) -> dict[str, Any]:
    return {"tool_call_id": tool_call_id, "tool_name": "shell", "arguments": {"cmd": tool_call_id}}


ROLES = ("assistant", "user", "tool", "system")


def message(message_id: str, text: str | None = None) -> dict[str, Any]:
    """A text message; its role and visibility follow from its id (so the same id is the same message)."""
    number = sum(map(ord, message_id))
    role, visibility = ROLES[number % 4], "internal" if number % 3 == 0 else "all"
    content = [{"type": "text", "text": text or message_id}]
    return {"message_id": message_id, "role": role, "visibility": visibility, "content": content}


def _unknown_calls(ident: str) -> dict[str, dict[str, Any]]:
    token = {"dispatch_id": ident, "claim_token": "tok"}
    resume = ToolCallResume(decision_id="x1", action="resume")
    return {
        "claim": {"thread_id": ident, "consumer_id": "w1", "lease_ms": 1_000},
        "claim_dispatch": {"dispatch_id": ident, "consumer_id": "w1", "lease_ms": 1_000},
        "extend_lease": {**token, "lease_ms": 1_000},
        "record_start": {**token, "instance_id": None},
        "ack": token,
        "nack": {**token, "error": "boom", "retry_at": None},
        "dead_letter": {**token, "error": "boom"},
        "cancel": {"dispatch_id": ident},
        "suspend": {**token, "tickets": [{"tool_call_id": "c1", "tool_name": "shell"}]},
        "decide": {"run_id": ident, "tool_call_id": "c1", "resume": resume, "resume_dispatch_id": None, "priority": 1},
        "finish_run": {"run_id": ident, "termination": {"type": "stopped"}},
        "commit_messages": {"thread_id": "t1", "run_id": ident, "messages": [message("m1")], "expected_first_seq": 1},
    }


UNKNOWN_ID_COMMANDS = sorted(_unknown_calls("x"))


def unknown_id_call(command: str, ident: str) -> dict[str, Any]:
    """The arguments of ``command`` addressing the dispatch, run or thread ``ident``."""
    return _unknown_calls(ident)[command]


# Arguments a digest leaves out on purpose: how a decision arrived is not part of it (spec Z11:
# one decision whatever the delivery path; spec 158: transport metadata is not in the digest).
NOT_DIGESTED = {("decide", "delivery_path")}


def _changed(name: str, value: Any) -> Any:
    """Another valid value for the argument, so the only refusal left is the key's conflict."""
    if isinstance(value, ToolCallResume):
        return value.model_copy(update={"reason": "changed"})
    if name == "termination":
        return {"type": "stopped"} if value.get("type") != "stopped" else {"type": "natural_end"}
    if name == "tickets":
        return [*value, {"tool_call_id": "c-changed", "tool_name": "shell"}]
    if name == "messages":
        return [*value, message("m-changed")]
    if name == "runs":
        return [*value, {"thread_id": "t1", "run_id": "r-changed"}]
    if name == "acks":
        return [*value, {"dispatch_id": "d-changed", "claim_token": "tok"}]
    if name == "reason":  # a dead-letter reason: one of three
        return "permanent_failure" if value != "permanent_failure" else "lease_expired"
    if name == "since":  # stays at or before the window's end
        return value - 1 if value > 0 else None
    if name == "until":
        return value + 1
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value - 1 if value > 1 else value + 1
    if value is None:
        return 5 if name in ("available_at", "retry_at", "expected_first_seq") else "changed"
    return f"{value}-changed"


def digested(entry: Keyed) -> list[str]:
    """The arguments the command's idempotency digest covers."""
    return sorted(n for n in entry.kwargs if (entry.command, n) not in NOT_DIGESTED)


def perturbed(entry: Keyed, pick: int) -> dict[str, Any]:
    """The entry's arguments with one of them (chosen by ``pick``) changed."""
    names = digested(entry)
    if not names:  # every argument left to its default (a sweep): give one another value
        return {**entry.kwargs, "limit": 5}
    name = names[pick % len(names)]
    return {**entry.kwargs, name: _changed(name, entry.kwargs[name])}


def other_command(entry: Keyed) -> tuple[str, dict[str, Any]]:
    """A different command to issue under the entry's key."""
    if entry.command == "interrupt":
        return "reclaim_expired_leases", {"limit": 1}
    return "interrupt", {"thread_id": "t1"}


# ---------------------------------------------------------------------- owner commands and messages


OWNER_DEFAULTS: dict[str, dict[str, Any]] = {
    "ack": {},
    "dead_letter": {"error": "boom"},
    "extend_lease": {"lease_ms": 1_000},
    "nack": {"error": "boom", "retry_at": None},
    "record_start": {"instance_id": None},
    "suspend": {"tickets": [ticket("c1")]},
}


def choose_messages(m: Model, thread: str, run_id: str, which: str, count: int, altered: bool) -> list[dict[str, Any]]:
    """Messages for a commit: ``fresh`` ids, the run's last commit ``again``, one ``taken`` id
    among fresh ones, a ``repeated`` id, or ``none``; ``altered`` changes the first one's text."""
    on_thread = sorted((s.seq, mid, s) for (t, mid), s in m.messages.items() if t == thread)
    fresh: list[tuple[str, str | None]] = [(m.fresh("m"), None) for _ in range(count)]
    chosen: list[tuple[str, str | None]] = fresh
    if which == "again":
        run = m.runs[run_id]
        if run.checkpoints:
            last = run.checkpoints[-1]
            chosen = [(mid, s.text) for seq, mid, s in on_thread if last.first <= seq <= last.last] or fresh
    elif which == "taken" and on_thread:
        taken = (on_thread[-1][1], on_thread[-1][2].text)
        chosen = [taken, *fresh[1:]] if count % 2 else [*fresh[1:], taken]
    elif which == "repeated":
        chosen = [fresh[0], fresh[0]]
    elif which == "none":
        chosen = []
    messages = [message(mid, text) for mid, text in chosen]
    if altered and messages:
        messages[0] = message(messages[0]["message_id"], messages[0]["content"][0]["text"] + "!")
    return messages
