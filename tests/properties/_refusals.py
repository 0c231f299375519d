"""What each refusal must name: the dispatch, run, key, message or seq it is about (spec F).

Checked for every refusal the machine meets, after the refusal type matched the oracle's.
"""

from __future__ import annotations

from typing import Any

from run_mailbox.domain import errors as e
from tests.properties._model import Model


def check_subject(command: str, kwargs: dict[str, Any], error: Exception, m: Model) -> None:
    def named(attribute: str, value: Any) -> None:
        got = getattr(error, attribute)
        assert got == value, f"{command}: {type(error).__name__}.{attribute} is {got!r}, expected {value!r}"

    if command in ("submit_many", "ack_many", "redrive_many"):
        if isinstance(error, e.IdempotencyConflict):
            named("key", kwargs["idempotency_key"])
        return  # a batch's refusal names one of its items (its place is in the field path)
    if isinstance(error, e.DecisionConflict):
        named("key", kwargs["resume"].decision_id)
        named("command", "decide")
    elif isinstance(error, e.IdempotencyConflict):
        named("key", kwargs["idempotency_key"])
    elif isinstance(error, e.DispatchNotFound):
        named("identifier", kwargs["dispatch_id"])
    elif isinstance(error, e.RunNotFound):
        named("identifier", kwargs["run_id"])
    elif isinstance(error, e.DuplicateRun):
        named("run_id", kwargs["run_id"])
    elif isinstance(error, e.DuplicateDispatch):
        named("dispatch_id", kwargs["dispatch_id"])
    elif isinstance(error, e.DedupeKeyConflict):
        thread, key = _dedupe_subject(command, kwargs, m)
        named("thread_id", thread)
        named("dedupe_key", key)
        holders = {d.dispatch_id for d in m.open_on(thread) if d.dedupe_key == key}
        assert error.holder in holders, f"{command}: the key is held by {holders}, not {error.holder}"
    elif isinstance(error, (e.ClaimTokenMismatch, e.DispatchSuperseded)):
        named("dispatch_id", kwargs["dispatch_id"])
    elif isinstance(error, e.DuplicateMessage):
        named("thread_id", kwargs["thread_id"])
        assert error.message_id in [x["message_id"] for x in kwargs["messages"]], error
    elif isinstance(error, e.SeqConflict):
        named("expected_first_seq", kwargs["expected_first_seq"])
        named("next_seq", m.committed[kwargs["thread_id"]] + 1)
    elif isinstance(error, e.ResumeFailed):
        named("run_id", kwargs["run_id"])


def _dedupe_subject(command: str, kwargs: dict[str, Any], m: Model) -> tuple[str, str]:
    """The thread and dedupe key a refused command wanted: a submit names them, a redrive takes its
    dead letter's."""
    if command == "redrive":
        dead = m.dispatches[kwargs["dispatch_id"]]
        assert dead.dedupe_key is not None, f"redrive: {dead} has no dedupe key to conflict on"
        return dead.thread_id, dead.dedupe_key
    return kwargs["thread_id"], kwargs["dedupe_key"]
