"""The canonical export checked against the reference model (spec payloads.md), not the renderer.

Every envelope: the fixed fields of the spec, scopes naming a thread and one of its runs, and log
positions in order. Then per kind what the model knows: each committed message once, under
``MessageCommitted/<thread>/<run>/<message>``, with its seq and kind; each checkpoint once, keyed
by its span; each accepted decision once, keyed by run, tool call and decision id; and the last
envelope of every dispatch carries the dispatch as the model holds it.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tests.properties._calls import message
from tests.properties._invariants import MESSAGE_KIND
from tests.properties._model import Model
from tests.properties._view_oracle import DISPATCH_TEXT

FIXED = {"visibility": "public", "origin": "mailbox", "writer_id": "mailbox", "schema_version": 1, "causation_id": None}
DISPATCH_KINDS = {
    "RunQueued", "DispatchClaimed", "LeaseExtended", "RunSubmitted", "DispatchAcked", "RunRescheduled",
    "DispatchDeadLettered", "RunCancelled", "RunSuperseded", "RunInterrupted",
}  # fmt: skip


# The spec's kinds and which of them the upstream records (payloads.md)
UPSTREAM = {
    "RunQueued", "RunSubmitted", "RunRescheduled", "RunCancelled", "RunInterrupted", "RunErrored",
    "MailboxDecisionReceived", "ToolPermissionResolved", "MailboxResumeFailed", "ThreadMessagesCheckpointed",
    "MessageCommitted",
}  # fmt: skip
OURS = {
    "DispatchClaimed", "LeaseExtended", "DispatchAcked", "DispatchDeadLettered", "RunSuperseded", "RunCreated",
    "RunStarted", "RunFinished", "RunSuspended",
}  # fmt: skip


SUPERSEDED_REASONS = {
    "queued dispatch superseded by interrupt",
    "queued dispatch superseded: its run finished first",
    "claimed dispatch superseded during lease renewal",
    "claimed dispatch superseded before runtime start",
    "claimed dispatch superseded by newer dispatch epoch",
    "claimed dispatch superseded before nack",
    "claimed dispatch superseded before dead letter",
    "claimed dispatch superseded before suspend",
    "claimed dispatch lease expired after interrupt",
}


def _dispatch_extras(e: dict[str, Any]) -> None:
    """What each dispatch kind adds to the shared payload (payloads.md section 1): upstream kinds
    keep the upstream's payload (RunRescheduled adds its reason), the others add their facts."""
    payload, kind = e["payload"], e["kind"]
    if kind == "RunRescheduled":
        assert payload["reason"] in ("retry_backoff", "expired_lease_reclaimed"), e
    elif kind == "RunSuperseded":
        assert payload["reason"] in SUPERSEDED_REASONS, e
    elif kind == "DispatchDeadLettered":
        assert payload["reason"] in ("attempts_exhausted", "lease_expired", "permanent_failure"), e
        assert isinstance(payload["error"], str) and payload["error"].strip(), e
    elif kind in ("DispatchClaimed", "LeaseExtended"):
        assert isinstance(payload["claimed_by"], str) and payload["lease_until"] > payload["updated_at"], e


def _run_errored(m: Model, e: dict[str, Any]) -> None:
    """RunErrored's payload is the upstream's serialised RunFinish, nothing more (payloads.md section 3),
    of a run the model holds as ended in that error."""
    run = m.runs[e["run_id"]]
    assert run.termination is not None and run.termination.type == "error" and run.error is not None, (run, e)
    want = {
        "event_type": "run_finish", "thread_id": run.thread_id, "run_id": run.run_id,
        "termination": {"type": "error", "value": run.error},
    }  # fmt: skip
    assert e["payload"] == want, f"RunErrored payload: {e}"


def check_export(m: Model, envelopes: list[Any]) -> None:
    for envelope in envelopes[:1]:
        try:
            envelope.position = -1
        except ValueError:  # pydantic's error for a frozen model
            pass
        else:
            raise AssertionError("a canonical event read from the log can be changed")
    lines = [e.model_dump(mode="json") for e in envelopes]
    versions: Counter[str] = Counter()
    for e in lines:
        assert e["kind"] in UPSTREAM | OURS, f"a kind the spec does not know: {e}"
        assert e["upstream"] == (e["kind"] in UPSTREAM), f"upstream flag of {e['kind']}: {e}"
        if e["kind"] in DISPATCH_KINDS:  # keyed by attempt (upstream kinds) or by the dispatch's version
            dispatch_id = e["payload"]["dispatch_id"]
            versions[dispatch_id] += 1
            tail = e["payload"]["attempt_count"] if e["upstream"] else versions[dispatch_id]
            assert e["idempotency_key"] == f"{e['kind']}/{dispatch_id}/{tail}", e
            _dispatch_extras(e)
    positions = [e["position"] for e in lines]
    assert positions == sorted(set(positions)), "envelopes out of log order or repeated"
    for e in lines:
        assert {k: e[k] for k in FIXED} == FIXED, e
        run = m.runs.get(e["run_id"])
        assert run is not None and run.thread_id == e["thread_id"], f"envelope of an unknown run: {e}"
        scopes = [{"scope_type": "thread", "thread_id": e["thread_id"]}, {"scope_type": "run", "run_id": e["run_id"]}]
        assert e["scopes"] == scopes, e
        if e["kind"] == "RunErrored":
            _run_errored(m, e)
    keys = Counter(e["idempotency_key"] for e in lines if e["upstream"] and e["kind"] not in DISPATCH_KINDS)
    for (thread, message_id), stored in m.messages.items():
        key = f"MessageCommitted/{thread}/{stored.run_id}/{message_id}"
        assert keys[key] == 1, f"{key} exported {keys[key]} times"
        (e,) = [x for x in lines if x["idempotency_key"] == key]
        assert e["payload"]["message_seq"] == stored.seq, e
        sent = message(message_id)  # the role and visibility the machine sent it with
        assert e["payload"]["role"] == sent["role"], e
        assert e["payload"]["message_kind"] == MESSAGE_KIND[(sent["role"], sent["visibility"])], e
    for thread, run_id, first, ids, _ in m.checkpoints:
        key = f"ThreadMessagesCheckpointed/{thread}/{run_id}/{first}-{first + len(ids) - 1}"
        assert keys[key] == 1, f"{key} exported {keys[key]} times"
    for (run_id, decision_id), (tool, _) in m.decisions.items():
        key = f"MailboxDecisionReceived/{run_id}/{tool}/{decision_id}"
        assert keys[key] == 1, f"{key} exported {keys[key]} times"
    decisions = [e for e in lines if e["kind"] == "MailboxDecisionReceived"]
    assert len(decisions) == len(m.decisions), "a decision exported that the model did not accept"
    last: dict[str, dict[str, Any]] = {}
    for e in lines:
        if e["kind"] in DISPATCH_KINDS:
            last[e["payload"]["dispatch_id"]] = e
    assert set(last) == set(m.dispatches), "dispatches without envelopes, or envelopes of unknown dispatches"
    for dispatch_id, e in last.items():
        d = m.dispatches[dispatch_id]
        want = {
            "thread_id": d.thread_id, "run_id": d.run_id, "dispatch_id": d.dispatch_id,
            "dispatch_epoch": d.dispatch_epoch, "attempt_count": d.attempt_count,
            "status": DISPATCH_TEXT[d.status.name], "available_at": d.available_at, "created_at": d.created_at,
            "updated_at": d.updated_at,
        }  # fmt: skip
        assert {k: e["payload"].get(k) for k in want} == want, f"last envelope of {dispatch_id}: {e}"
        assert e["created_at"] == d.updated_at and e["correlation_id"] == dispatch_id, e
