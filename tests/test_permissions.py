"""Spec G: suspend for tool permission, decide, resume, finish_run (all backends).

A run suspends while running (its dispatch is acked and the thread is free), waits for one
decision per ticket, and the last decision queues a new dispatch for the same run in the
same transaction. Every refusal records nothing.
"""

from __future__ import annotations

from typing import Any

import pytest

from run_mailbox.domain import (
    ClaimTokenMismatch,
    DispatchStatus,
    DispatchSuperseded,
    IdempotencyConflict,
    InvalidArgument,
    InvalidTransition,
    RunNotFound,
    RunStatus,
)
from run_mailbox.domain.errors import DecisionConflict, ResumeFailed
from run_mailbox.domain.permissions import ToolCallResume, ToolTicket
from run_mailbox.domain.reasons import RUN_FINISHED_FIRST

T = "thread-1"
R = "run-1"
D = "d-1"

DECISION_FIELDS = {
    "thread_id",
    "run_id",
    "dispatch_id",
    "tool_call_id",
    "decision_id",
    "action",
    "result",
    "reason",
    "resume_updated_at",
    "delivery_path",
}
RESUME_FAILED_FIELDS = {
    "thread_id",
    "run_id",
    "dispatch_id",
    "dispatch_epoch",
    "attempt_count",
    "status",
    "reason",
    "error",
    "decisions",
}


# ------------------------------------------------------------------ helpers


def log_length(service) -> int:
    return service.recorder.max_notification_id() or 0


def events(service, *, after: int = 0, upstream_only: bool = False) -> list[Any]:
    return service.canonical_events(after=after, limit=10_000, upstream_only=upstream_only)


def kinds(service, *, after: int = 0) -> list[str]:
    return [e.kind for e in events(service, after=after, upstream_only=True)]


def of_kind(service, kind: str) -> list[Any]:
    return [e for e in events(service) if e.kind == kind]


def ticket(tool_call_id: str, tool_name: str = "shell", arguments: Any = None) -> dict[str, Any]:
    return {"tool_call_id": tool_call_id, "tool_name": tool_name, "arguments": arguments}


def approve(decision_id: str, approved: Any = True, **extra: Any) -> dict[str, Any]:
    return {"decision_id": decision_id, "action": "resume", "result": {"approved": approved}, **extra}


def start(service, thread: str = T, dispatch_id: str | None = None) -> str:
    """Claims (the given or the thread's next) dispatch and records its start; returns the token."""
    if dispatch_id is None:
        claimed = service.claim(thread, consumer_id="worker")
    else:
        claimed = service.claim_dispatch(dispatch_id, consumer_id="worker")
    assert claimed is not None
    service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    return claimed.claim_token  # type: ignore[no-any-return]


def suspended(service, *tool_call_ids: str, run_id: str = R, dispatch_id: str = D) -> None:
    """A run that started and suspended for the given tool calls."""
    service.submit(T, run_id, dispatch_id=dispatch_id)
    token = start(service, dispatch_id=dispatch_id)
    service.suspend(dispatch_id, claim_token=token, tickets=[ticket(t) for t in tool_call_ids or ("tc-1",)])


def new_dispatches(service, before: set[str]) -> list[Any]:
    return [d for d in service.list_dispatches(T) if d.dispatch_id not in before]


def dispatch_ids(service) -> set[str]:
    return {d.dispatch_id for d in service.list_dispatches(T)}


# ------------------------------------------------------------------ suspend


def test_suspending_a_running_run_waits_for_permission_acks_the_dispatch_and_frees_the_thread(service):
    """G (host-reported suspension): the run waits; the thread can run other work meanwhile."""
    service.submit(T, R, dispatch_id=D)
    token = start(service, dispatch_id=D)
    tickets = [ticket("tc-1", "shell", {"cmd": "ls"}), ToolTicket(tool_call_id="tc-2", tool_name="http")]
    record = service.suspend(D, claim_token=token, tickets=tickets)

    assert record == service.get_run(R)
    assert record.status is RunStatus.WAITING
    assert record.waiting_reason == "tool_permission"
    assert [(t.tool_call_id, t.tool_name, t.arguments) for t in record.tickets] == [
        ("tc-1", "shell", {"cmd": "ls"}),
        ("tc-2", "http", None),
    ]
    assert record.pending_tickets() == record.tickets
    assert service.get_dispatch(D).status is DispatchStatus.ACKED
    assert service.get_mailbox(T).claimed is None
    service.submit(T, "run-other", dispatch_id="d-other")
    other = service.claim(T, consumer_id="worker-2")
    assert other is not None and other.dispatch_id == "d-other"


def test_suspending_before_record_start_is_refused_and_records_nothing(service):
    service.submit(T, R, dispatch_id=D)
    claimed = service.claim(T, consumer_id="worker")
    head = log_length(service)
    with pytest.raises(InvalidTransition, match="record_start"):
        service.suspend(D, claim_token=claimed.claim_token, tickets=[ticket("tc-1")])
    assert log_length(service) == head
    assert service.get_run(R).status is RunStatus.CREATED
    assert service.get_dispatch(D).status is DispatchStatus.CLAIMED


def test_suspending_with_a_wrong_claim_token_is_refused_and_records_nothing(service):
    service.submit(T, R, dispatch_id=D)
    start(service, dispatch_id=D)
    head = log_length(service)
    with pytest.raises(ClaimTokenMismatch):
        service.suspend(D, claim_token="not-the-token", tickets=[ticket("tc-1")])
    assert log_length(service) == head
    assert service.get_run(R).status is RunStatus.RUNNING
    assert service.get_dispatch(D).status is DispatchStatus.CLAIMED


@pytest.mark.parametrize(
    "tickets",
    [[], [ticket("tc-1"), ticket("tc-1")], [ticket(" ")], [{"tool_call_id": "tc-1"}], "tc-1"],
    ids=["none", "duplicate-ids", "blank-id", "no-tool-name", "not-a-list"],
)
def test_suspending_with_malformed_tickets_is_refused_and_records_nothing(service, tickets):
    service.submit(T, R, dispatch_id=D)
    token = start(service, dispatch_id=D)
    head = log_length(service)
    with pytest.raises(InvalidArgument):
        service.suspend(D, claim_token=token, tickets=tickets)
    assert log_length(service) == head
    assert service.get_run(R).status is RunStatus.RUNNING


# ------------------------------------------------------------------ decide and resume


def test_the_only_pending_decision_queues_a_resume_dispatch_for_the_same_run(service, clock):
    """141, Z12: the decision event names the dispatch that resumes the run."""
    suspended(service, "tc-1")
    before, head = dispatch_ids(service), log_length(service)
    clock.advance(50)
    resume = ToolCallResume(decision_id="dec-1", action="resume", result={"approved": True}, reason="ok", updated_at=7)
    outcome = service.decide(R, "tc-1", resume)

    created = new_dispatches(service, before)
    assert len(created) == 1
    resumed = created[0]
    assert (resumed.run_id, resumed.status, resumed.created_at) == (R, DispatchStatus.QUEUED, clock.now)
    assert outcome.model_dump() == {
        "run_id": R,
        "tool_call_id": "tc-1",
        "decision_id": "dec-1",
        "action": "resume",
        "approved": True,
        "delivery_path": "durable_dispatch",
        "pending_tool_calls": [],
        "resume_dispatch_id": resumed.dispatch_id,
    }
    assert kinds(service, after=head) == ["MailboxDecisionReceived", "ToolPermissionResolved", "RunQueued"]
    received = of_kind(service, "MailboxDecisionReceived")[0]
    assert received.payload["dispatch_id"] == resumed.dispatch_id
    assert of_kind(service, "RunQueued")[-1].payload["run_id"] == R
    run = service.get_run(R)
    assert run.status is RunStatus.WAITING
    assert run.pending_tickets() == []
    assert [(d.tool_call_id, d.resume, d.resume_dispatch_id) for d in run.decisions] == [
        ("tc-1", resume, resumed.dispatch_id)
    ]


def test_a_decision_delivered_again_by_any_path_writes_nothing_and_returns_the_same_outcome(service):
    """145, Z11: a true re-delivery dedupes, whatever path it came by."""
    suspended(service, "tc-1")
    first = service.decide(R, "tc-1", approve("dec-1"), delivery_path="remote_live")
    head, dispatches = log_length(service), service.list_dispatches(T)

    again = service.decide(R, "tc-1", approve("dec-1"), delivery_path="remote_live")
    by_another_path = service.decide(R, "tc-1", approve("dec-1"), delivery_path="durable_dispatch")
    as_model = service.decide(
        R, "tc-1", ToolCallResume(decision_id="dec-1", action="resume", result={"approved": True})
    )

    assert again == first
    assert by_another_path == first
    assert as_model == first
    assert first.delivery_path == "remote_live"
    assert log_length(service) == head
    assert service.list_dispatches(T) == dispatches
    assert len(of_kind(service, "MailboxDecisionReceived")) == 1
    assert len(of_kind(service, "ToolPermissionResolved")) == 1


@pytest.mark.parametrize(
    ("tool_call_id", "resume"),
    [
        ("tc-1", approve("dec-1", approved=False)),
        ("tc-1", {"decision_id": "dec-1", "action": "cancel", "result": {"approved": True}}),
        ("tc-1", approve("dec-1", reason="changed my mind")),
        ("tc-2", approve("dec-1")),
    ],
    ids=["other-result", "other-action", "other-reason", "other-tool-call"],
)
def test_a_decision_id_reused_with_different_content_conflicts_and_records_nothing(service, tool_call_id, resume):
    """145, 152."""
    suspended(service, "tc-1", "tc-2")
    original = service.decide(R, "tc-1", approve("dec-1"))
    head = log_length(service)
    with pytest.raises(DecisionConflict) as refused:
        service.decide(R, tool_call_id, resume)
    assert isinstance(refused.value, IdempotencyConflict)
    assert log_length(service) == head
    assert service.decide(R, "tc-1", approve("dec-1")) == original


def test_with_two_tickets_only_the_last_decision_queues_the_resume_dispatch(service):
    """141: one resume dispatch, for the same run, once nothing is pending."""
    suspended(service, "tc-1", "tc-2")
    before = dispatch_ids(service)

    first = service.decide(R, "tc-1", approve("dec-1"))
    assert first.pending_tool_calls == ["tc-2"]
    assert first.resume_dispatch_id is None
    assert dispatch_ids(service) == before
    assert service.get_run(R).status is RunStatus.WAITING
    assert [t.tool_call_id for t in service.get_run(R).pending_tickets()] == ["tc-2"]

    second = service.decide(R, "tc-2", approve("dec-2", approved=False))
    created = new_dispatches(service, before)
    assert len(created) == 1
    assert created[0].dispatch_id == second.resume_dispatch_id
    assert (created[0].run_id, created[0].status) == (R, DispatchStatus.QUEUED)
    assert second.pending_tool_calls == []
    queued = service.list_dispatches(T, status=DispatchStatus.QUEUED)
    assert [(d.dispatch_id, d.run_id) for d in queued] == [(second.resume_dispatch_id, R)]
    received = {e.payload["decision_id"]: e.payload["dispatch_id"] for e in of_kind(service, "MailboxDecisionReceived")}
    assert received == {"dec-1": D, "dec-2": second.resume_dispatch_id}


def test_the_resume_dispatch_is_claimed_started_and_acked_like_any_other(service):
    suspended(service, "tc-1")
    outcome = service.decide(R, "tc-1", approve("dec-1"))

    claimed = service.claim(T, consumer_id="worker-2")
    assert claimed is not None and claimed.dispatch_id == outcome.resume_dispatch_id
    service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    running = service.get_run(R)
    assert running.status is RunStatus.RUNNING
    assert running.waiting_reason is None
    assert running.dispatch_id == outcome.resume_dispatch_id

    service.ack(claimed.dispatch_id, claim_token=claimed.claim_token)
    done = service.get_run(R)
    assert done.status is RunStatus.DONE
    assert done.termination.to_json() == {"type": "natural_end"}
    assert service.get_dispatch(claimed.dispatch_id).status is DispatchStatus.ACKED


def test_an_interrupt_before_the_decision_queues_the_resume_dispatch_at_the_new_epoch(service):
    """52, Z3: the waiting run is not superseded; its resume carries the new epoch."""
    suspended(service, "tc-1")
    result = service.interrupt(T)
    assert result.superseded_count == 0 and result.active_dispatch is None
    assert service.get_run(R).status is RunStatus.WAITING

    outcome = service.decide(R, "tc-1", approve("dec-1"))
    resumed = service.get_dispatch(outcome.resume_dispatch_id)
    assert resumed.dispatch_epoch == result.new_dispatch_epoch == 1
    claimed = service.claim(T, consumer_id="worker")
    assert claimed is not None and claimed.dispatch_id == resumed.dispatch_id
    service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    assert service.get_run(R).status is RunStatus.RUNNING


def test_an_interrupt_after_the_decision_supersedes_the_resume_dispatch_and_the_run_ends_cancelled(service):
    """50, 58."""
    suspended(service, "tc-1")
    outcome = service.decide(R, "tc-1", approve("dec-1"))
    result = service.interrupt(T)

    assert [d.dispatch_id for d in result.superseded] == [outcome.resume_dispatch_id]
    assert service.get_dispatch(outcome.resume_dispatch_id).status is DispatchStatus.SUPERSEDED
    run = service.get_run(R)
    assert run.status is RunStatus.DONE
    assert run.termination.to_json() == {"type": "cancelled"}
    assert service.claim(T, consumer_id="worker") is None


def test_a_new_decision_after_the_resume_dispatch_was_superseded_is_refused(service):
    suspended(service, "tc-1")
    original = service.decide(R, "tc-1", approve("dec-1"))
    service.interrupt(T)
    head = log_length(service)
    with pytest.raises(InvalidTransition, match="done"):
        service.decide(R, "tc-1", approve("dec-late"))
    assert service.decide(R, "tc-1", approve("dec-1")) == original
    assert log_length(service) == head


def test_a_decision_for_a_run_whose_dispatch_was_superseded_before_it_suspended_is_refused(service):
    """55, 60: the fenced owner's suspension supersedes its dispatch; the run is done."""
    service.submit(T, R, dispatch_id=D)
    token = start(service, dispatch_id=D)
    service.interrupt(T)
    with pytest.raises(DispatchSuperseded):
        service.suspend(D, claim_token=token, tickets=[ticket("tc-1")])
    assert service.get_dispatch(D).status is DispatchStatus.SUPERSEDED
    assert service.get_run(R).status is RunStatus.DONE
    head = log_length(service)
    with pytest.raises(InvalidTransition):
        service.decide(R, "tc-1", approve("dec-1"))
    assert log_length(service) == head
    assert service.list_dispatches(T, status=DispatchStatus.QUEUED) == []


def test_a_denial_still_resumes_the_run_so_the_agent_sees_it(service):
    """A denied tool call is decided, then the run resumes and reads the denial."""
    suspended(service, "tc-1")
    outcome = service.decide(R, "tc-1", approve("dec-no", approved=False, reason="too risky"))
    assert outcome.approved is False
    assert outcome.resume_dispatch_id is not None
    resolved = of_kind(service, "ToolPermissionResolved")
    assert [(e.payload["approved"], e.payload["reason"]) for e in resolved] == [(False, "too risky")]

    token = start(service)
    assert service.get_run(R).status is RunStatus.RUNNING
    decision = service.get_run(R).decisions[0]
    assert (decision.resume.approved, decision.resume.reason) == (False, "too risky")
    service.ack(outcome.resume_dispatch_id, claim_token=token)
    assert service.get_run(R).termination.to_json() == {"type": "natural_end"}


def test_a_cancel_action_resumes_the_run_without_a_permission_resolution(service):
    """145: a plain cancel carries no approved flag."""
    suspended(service, "tc-1")
    head = log_length(service)
    outcome = service.decide(R, "tc-1", {"decision_id": "dec-c", "action": "cancel", "reason": "user aborted"})
    assert (outcome.action, outcome.approved) == ("cancel", None)
    assert kinds(service, after=head) == ["MailboxDecisionReceived", "RunQueued"]
    assert service.get_dispatch(outcome.resume_dispatch_id).status is DispatchStatus.QUEUED
    start(service)
    assert service.get_run(R).status is RunStatus.RUNNING


@pytest.mark.parametrize(
    ("result", "resolved"),
    [
        ({"approved": True}, True),
        ({"approved": False}, False),
        ({"approved": "yes"}, None),
        ({"approved": 1}, None),
        ({"note": "no approved field"}, None),
        (None, None),
    ],
    ids=["true", "false", "string", "number", "missing-field", "no-result"],
)
def test_tool_permission_resolved_is_recorded_only_when_approved_is_a_json_boolean(service, result, resolved):
    """145."""
    suspended(service, "tc-1")
    head = log_length(service)
    service.decide(R, "tc-1", {"decision_id": "dec-1", "action": "resume", "result": result})
    recorded = [
        e for e in events(service, after=head) if e.kind in ("MailboxDecisionReceived", "ToolPermissionResolved")
    ]
    if resolved is None:
        assert [e.kind for e in recorded] == ["MailboxDecisionReceived"]
    else:
        assert [e.kind for e in recorded] == ["MailboxDecisionReceived", "ToolPermissionResolved"]
        assert recorded[1].payload["approved"] is resolved
    assert recorded[0].payload["result"] == result


def test_a_run_suspends_again_after_it_resumed_and_each_suspension_resumes_it_once(service):
    suspended(service, "tc-1")
    first = service.decide(R, "tc-1", approve("dec-1"))
    token = start(service)
    head = log_length(service)
    with pytest.raises(InvalidArgument, match="already decided"):
        service.suspend(first.resume_dispatch_id, claim_token=token, tickets=[ticket("tc-2"), ticket("tc-1")])
    assert log_length(service) == head

    again = service.suspend(first.resume_dispatch_id, claim_token=token, tickets=[ticket("tc-2")])
    assert again.status is RunStatus.WAITING
    assert [t.tool_call_id for t in again.tickets] == ["tc-2"]
    assert service.get_dispatch(first.resume_dispatch_id).status is DispatchStatus.ACKED
    with pytest.raises(InvalidTransition, match="no ticket"):
        service.decide(R, "tc-1", approve("dec-1-again"))

    second = service.decide(R, "tc-2", approve("dec-2"))
    assert second.resume_dispatch_id not in (None, D, first.resume_dispatch_id)
    token = start(service)
    service.ack(second.resume_dispatch_id, claim_token=token)
    run = service.get_run(R)
    assert (run.status, run.termination.to_json()) == (RunStatus.DONE, {"type": "natural_end"})
    assert [d.resume_dispatch_id for d in run.decisions] == [first.resume_dispatch_id, second.resume_dispatch_id]
    assert [d.run_id for d in service.list_dispatches(T)] == [R, R, R]
    keys = [e.idempotency_key for e in events(service)]
    assert len(keys) == len(set(keys)), "every occurrence has a key of its own (Z11)"


def test_re_delivering_a_decision_after_a_later_suspension_returns_the_original_outcome(service):
    """145: a re-delivery is a no-op returning the identical outcome."""
    suspended(service, "tc-1", "tc-2")
    first = service.decide(R, "tc-1", approve("dec-1"))
    last = service.decide(R, "tc-2", approve("dec-2"))
    token = start(service)
    service.suspend(last.resume_dispatch_id, claim_token=token, tickets=[ticket("tc-3")])
    assert service.decide(R, "tc-1", approve("dec-1")) == first


# ------------------------------------------------------------------ refusals


def test_deciding_for_an_unknown_run_raises_run_not_found(service):
    head = log_length(service)
    with pytest.raises(RunNotFound):
        service.decide("no-such-run", "tc-1", approve("dec-1"))
    assert log_length(service) == head


@pytest.mark.parametrize("stage", ["created", "running", "done"])
def test_deciding_for_a_run_that_is_not_waiting_is_refused(service, stage):
    service.submit(T, R, dispatch_id=D)
    if stage == "running":
        start(service, dispatch_id=D)
    if stage == "done":
        token = start(service, dispatch_id=D)
        service.ack(D, claim_token=token)
    head = log_length(service)
    with pytest.raises(InvalidTransition, match=stage):
        service.decide(R, "tc-1", approve("dec-1"))
    assert log_length(service) == head


def test_deciding_for_a_tool_call_without_a_ticket_is_refused(service):
    suspended(service, "tc-1")
    head = log_length(service)
    with pytest.raises(InvalidTransition, match="no ticket"):
        service.decide(R, "tc-unknown", approve("dec-1"))
    assert log_length(service) == head
    assert service.get_run(R).decisions == []


def test_a_tool_call_decided_under_another_decision_id_is_refused(service):
    suspended(service, "tc-1", "tc-2")
    service.decide(R, "tc-1", approve("dec-a"))
    head = log_length(service)
    with pytest.raises(InvalidTransition, match="already decided"):
        service.decide(R, "tc-1", approve("dec-b"))
    assert log_length(service) == head
    assert [d.resume.decision_id for d in service.get_run(R).decisions] == ["dec-a"]


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"resume": {"decision_id": "dec-1", "action": "approve"}}, "resume.action"),
        ({"resume": {"decision_id": " ", "action": "resume"}}, "resume.decision_id"),
        ({"resume": approve("dec-1"), "delivery_path": "carrier_pigeon"}, "delivery_path"),
        ({"resume": approve("dec-1"), "tool_call_id": ""}, "tool_call_id"),
    ],
    ids=["unknown-action", "blank-decision-id", "unknown-delivery-path", "blank-tool-call-id"],
)
def test_malformed_decisions_are_refused_and_record_nothing(service, arguments, field):
    suspended(service, "tc-1")
    head = log_length(service)
    call = {"tool_call_id": "tc-1", **arguments}
    with pytest.raises(InvalidArgument) as refused:
        service.decide(R, call.pop("tool_call_id"), call.pop("resume"), **call)
    assert refused.value.field == field
    assert log_length(service) == head


# ------------------------------------------------------------------ resume failure


def test_a_refused_resume_records_mailbox_resume_failed_and_leaves_the_run_waiting(service, clock):
    """117, Z13: the decision is not accepted; a later decision with a fresh id resumes the run."""
    suspended(service, "tc-1", "tc-2")
    service.decide(R, "tc-1", approve("dec-1", reason="fine", updated_at=11))
    dispatches, head = service.list_dispatches(T), log_length(service)
    clock.advance(5)
    refused_resume = {"decision_id": "dec-2", "action": "cancel", "reason": "not now", "updated_at": 12}
    with pytest.raises(ResumeFailed) as refused:
        service.decide(R, "tc-2", refused_resume, resume_dispatch_id=D)
    assert refused.value.run_id == R
    assert "already exists" in refused.value.error

    assert kinds(service, after=head) == ["MailboxResumeFailed"]
    failed = of_kind(service, "MailboxResumeFailed")[0]
    assert set(failed.payload) == RESUME_FAILED_FIELDS
    assert failed.payload["reason"] == "enqueue_failed"
    assert failed.payload["error"] == refused.value.error
    assert (failed.payload["thread_id"], failed.payload["run_id"], failed.payload["dispatch_id"]) == (T, R, D)
    assert failed.payload["status"] == "queued"
    assert failed.correlation_id == D
    assert failed.payload["attempt_count"] == 0
    assert failed.idempotency_key == f"MailboxResumeFailed/{D}/0/dec-2", "upstream key + refused decision (Z11)"
    assert failed.payload["decisions"] == [
        {
            "tool_call_id": "tc-1",
            "decision_id": "dec-1",
            "action": "resume",
            "result": {"approved": True},
            "reason": "fine",
            "resume_updated_at": 11,
        },
        {
            "tool_call_id": "tc-2",
            "decision_id": "dec-2",
            "action": "cancel",
            "result": None,
            "reason": "not now",
            "resume_updated_at": 12,
        },
    ]
    run = service.get_run(R)
    assert run.status is RunStatus.WAITING
    assert [t.tool_call_id for t in run.pending_tickets()] == ["tc-2"]
    assert [d.resume.decision_id for d in run.decisions] == ["dec-1"]
    assert service.list_dispatches(T) == dispatches

    later = service.decide(R, "tc-2", {"decision_id": "dec-3", "action": "cancel", "reason": "not now"})
    assert later.resume_dispatch_id is not None
    assert service.get_dispatch(later.resume_dispatch_id).status is DispatchStatus.QUEUED
    assert [d.resume.decision_id for d in service.get_run(R).decisions] == ["dec-1", "dec-3"]


def test_two_resume_failures_of_different_decisions_get_keys_of_their_own(service):
    """Z11: a genuine second occurrence gets its own key; a retry of the same one keeps it."""
    suspended(service, "tc-1")
    for decision_id in ("dec-a", "dec-b", "dec-a"):
        with pytest.raises(ResumeFailed):
            service.decide(R, "tc-1", approve(decision_id), resume_dispatch_id=D)
    failures = of_kind(service, "MailboxResumeFailed")
    assert len(failures) == 3
    assert failures[0].idempotency_key != failures[1].idempotency_key
    assert (failures[2].idempotency_key, failures[2].payload) == (failures[0].idempotency_key, failures[0].payload)


# ------------------------------------------------------------------ finish_run


@pytest.mark.parametrize(
    "termination",
    [
        {"type": "natural_end"},
        {"type": "behavior_requested"},
        {"type": "cancelled"},
        {"type": "stopped", "value": {"code": "max_turns", "detail": "25 turns"}},
        {"type": "blocked", "value": "needs approval"},
    ],
    ids=lambda t: t["type"],
)
def test_finish_run_ends_a_waiting_run_with_the_given_termination(service, termination):
    suspended(service, "tc-1")
    record = service.finish_run(R, termination)
    assert record == service.get_run(R)
    assert record.status is RunStatus.DONE
    assert record.termination.to_json() == termination
    assert "RunErrored" not in kinds(service)


def test_finish_run_with_an_error_records_run_errored_in_the_run_finish_shape(service):
    """114, payloads 3."""
    suspended(service, "tc-1")
    head = log_length(service)
    record = service.finish_run(R, {"type": "error", "value": "boom"})
    assert (record.status, record.error) == (RunStatus.DONE, "boom")
    assert record.termination.to_json() == {"type": "error", "value": "boom"}
    assert kinds(service, after=head) == ["RunErrored"]
    errored = of_kind(service, "RunErrored")[0]
    assert errored.payload == {
        "event_type": "run_finish",
        "thread_id": T,
        "run_id": R,
        "termination": {"type": "error", "value": "boom"},
    }
    assert errored.correlation_id == D
    assert errored.idempotency_key == f"RunErrored/{D}/0"
    assert errored.scopes == [{"scope_type": "thread", "thread_id": T}, {"scope_type": "run", "run_id": R}]


def test_finish_run_refuses_a_suspended_termination(service):
    suspended(service, "tc-1")
    head = log_length(service)
    with pytest.raises(InvalidArgument):
        service.finish_run(R, {"type": "suspended"})
    assert log_length(service) == head
    assert service.get_run(R).status is RunStatus.WAITING


def test_a_finished_run_cannot_be_finished_again(service):
    """Done is absorbing (payloads 6)."""
    suspended(service, "tc-1")
    service.finish_run(R, {"type": "natural_end"})
    head = log_length(service)
    for termination in ({"type": "natural_end"}, {"type": "error", "value": "late"}):
        with pytest.raises(InvalidTransition):
            service.finish_run(R, termination)
    assert log_length(service) == head
    assert service.get_run(R).termination.to_json() == {"type": "natural_end"}


def test_finish_run_for_an_unknown_run_raises_run_not_found(service):
    with pytest.raises(RunNotFound):
        service.finish_run("no-such-run", {"type": "natural_end"})


def test_finish_run_withdraws_the_queued_resume_dispatch(service):
    suspended(service, "tc-1")
    outcome = service.decide(R, "tc-1", approve("dec-1"))
    service.finish_run(R, {"type": "blocked", "value": "policy"})
    withdrawn = service.get_dispatch(outcome.resume_dispatch_id)
    assert withdrawn.status is DispatchStatus.SUPERSEDED
    assert withdrawn.last_error == RUN_FINISHED_FIRST
    assert service.get_mailbox(T).open == {}
    assert service.claim(T, consumer_id="worker") is None
    assert service.get_run(R).termination.to_json() == {"type": "blocked", "value": "policy"}


def test_finish_run_leaves_a_claimed_dispatch_to_its_owner(service):
    service.submit(T, R, dispatch_id=D)
    token = start(service, dispatch_id=D)
    service.finish_run(R, {"type": "stopped", "value": {"code": "max_turns"}})
    assert service.get_dispatch(D).status is DispatchStatus.CLAIMED
    service.ack(D, claim_token=token)
    assert service.get_dispatch(D).status is DispatchStatus.ACKED
    assert service.get_run(R).termination.to_json() == {"type": "stopped", "value": {"code": "max_turns"}}


def test_finish_run_with_an_error_does_not_also_report_the_run_cancelled(service):
    """128: RunCancelled only when a cancel moved the run to done."""
    suspended(service, "tc-1")
    service.decide(R, "tc-1", approve("dec-1"))
    head = log_length(service)
    service.finish_run(R, {"type": "error", "value": "boom"})
    assert kinds(service, after=head) == ["RunErrored"]


# ------------------------------------------------------------------ canonical envelopes


def test_decision_events_carry_the_upstream_envelope_payload_and_keys(service, clock):
    """140, payloads 0 and 4: correlation = decision id, keys per run/tool call/decision."""
    suspended(service, "tc-1")
    clock.advance(10)
    resume = approve("dec-1", reason="ok", updated_at=99)
    outcome = service.decide(R, "tc-1", resume, delivery_path="remote_live")
    received, resolved = of_kind(service, "MailboxDecisionReceived"), of_kind(service, "ToolPermissionResolved")
    assert len(received) == len(resolved) == 1
    expected = {
        "thread_id": T,
        "run_id": R,
        "dispatch_id": outcome.resume_dispatch_id,
        "tool_call_id": "tc-1",
        "decision_id": "dec-1",
        "action": "resume",
        "result": {"approved": True},
        "reason": "ok",
        "resume_updated_at": 99,
        "delivery_path": "remote_live",
    }
    assert set(received[0].payload) == DECISION_FIELDS
    assert received[0].payload == expected
    assert set(resolved[0].payload) == DECISION_FIELDS | {"approved"}
    assert resolved[0].payload == {**expected, "approved": True}
    for event in (received[0], resolved[0]):
        assert event.upstream is True
        assert event.correlation_id == "dec-1"
        assert event.idempotency_key == f"{event.kind}/{R}/tc-1/dec-1"
        assert event.scopes == [{"scope_type": "thread", "thread_id": T}, {"scope_type": "run", "run_id": R}]
        assert (event.thread_id, event.run_id) == (T, R)
        assert (event.visibility, event.writer_id, event.causation_id, event.schema_version) == (
            "public",
            "mailbox",
            None,
            1,
        )
        assert event.created_at == clock.now
    assert received[0].position < resolved[0].position
