"""The oracle for the run commands: suspend, decide, finish_run and commit_messages."""

from __future__ import annotations

from typing import Any

from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.errors import (
    ClaimTokenMismatch,
    DecisionConflict,
    DuplicateMessage,
    InvalidArgument,
    InvalidTransition,
    ResumeFailed,
    RunNotFound,
    SeqConflict,
)
from run_mailbox.domain.messages import MessageSeqRange
from run_mailbox.domain.permissions import Decision, ToolTicket
from run_mailbox.domain.results import CheckpointResult
from run_mailbox.domain.values import TerminationReason
from tests.properties._expect import (
    ACKED,
    CLEARED_CLAIM,
    DONE,
    QUEUED,
    RUN_FINISHED_FIRST,
    RUNNING,
    SUPERSEDED,
    WAITING,
    Expect,
    is_id,
    record_is,
    refuse,
    returns,
    same,
    succeed,
)
from tests.properties._model import Model, StoredMessage
from tests.properties._oracle_owner import owner_or_refusal


def _names(field: str) -> Any:
    return lambda error: same(error, field=field)


def suspend(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    bad = [i for i, t in enumerate(kw["tickets"]) if not is_id(t["tool_call_id"])]
    if bad and is_id(kw["dispatch_id"]) and is_id(kw["claim_token"]):
        return refuse(InvalidArgument, "a malformed tool call id", _names(f"tickets[{bad[0]}].tool_call_id"))
    d, refusal = owner_or_refusal(m, now, "suspend", kw)
    if refusal is not None and refusal.refusal not in ((InvalidTransition,), (ClaimTokenMismatch,)):
        return refusal  # malformed, unknown, or fenced: decided before the run is looked at
    assert d is not None
    run = m.runs[d.run_id]
    calls = [t["tool_call_id"] for t in kw["tickets"]]
    if run.status is not RUNNING:
        return refuse(InvalidTransition, f"the run is {run.status.value}, must be running")
    if not calls or len(set(calls)) != len(calls) or set(calls) & {x.tool_call_id for x in run.decisions}:
        return refuse(InvalidArgument, "no tickets, a repeated tool call, or one decided before")
    if refusal is not None:
        return refusal  # the token does not own the dispatch: the ack inside suspend refuses

    def then(record: Any) -> None:
        tickets = [ToolTicket(**t) for t in kw["tickets"]]
        record_is(m, run, now, status=WAITING, waiting_reason="tool_permission", tickets=tickets)
        assert record == m.runs[run.run_id], "the returned record is the stored one"
        run_status = DONE if d.run_status is RUNNING else d.run_status
        record_is(m, d, now, status=ACKED, completed_at=now, run_status=run_status, **CLEARED_CLAIM)

    return succeed(then)


def decide(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    resume, tool = kw["resume"], kw["tool_call_id"]
    if not is_id(kw["run_id"]) or not is_id(tool):
        return refuse(InvalidArgument, "malformed argument")
    if not is_id(resume.decision_id):
        return refuse(InvalidArgument, "a malformed decision id", _names("resume.decision_id"))
    run = m.runs.get(kw["run_id"])
    if run is None:
        return refuse(RunNotFound, "no such run")
    key = (run.run_id, resume.decision_id)
    if key in m.decisions:
        if m.decisions[key] != (tool, resume):
            return refuse(DecisionConflict, "the decision id was delivered with other content")
        return returns(m.outcomes[key], "a re-delivered decision returns its first outcome")
    if run.status is not WAITING:
        return refuse(InvalidTransition, f"the run is {run.status.value}, not waiting")
    tickets, decided = [t.tool_call_id for t in run.tickets], {x.tool_call_id for x in run.decisions}
    if tool not in tickets or tool in decided:
        return refuse(InvalidTransition, "no pending ticket for the tool call")
    remaining = [t for t in tickets if t not in decided and t != tool]
    chosen = kw["resume_dispatch_id"]
    if not remaining and chosen is not None and chosen in m.dispatches:
        return refuse(ResumeFailed, "the resume dispatch id is taken", lambda _: record_is(m, run, None))

    current = m.dispatches.get(run.dispatch_id or "")
    priority = kw["priority"] if kw["priority"] is not None else (current.priority if current else 128)

    def then(outcome: Any) -> None:
        m.decisions[key], m.outcomes[key] = (tool, resume), outcome
        written = outcome.resume_dispatch_id if not remaining else run.dispatch_id
        m.decision_facts[key] = (now, kw.get("delivery_path", "durable_dispatch"), written)
        same(outcome, run_id=run.run_id, tool_call_id=tool, decision_id=resume.decision_id, action=resume.action)
        approved = resume.result.get("approved") if isinstance(resume.result, dict) else None
        same(outcome, approved=approved if isinstance(approved, bool) else None, pending_tool_calls=remaining)
        new = outcome.resume_dispatch_id
        decision = Decision(tool_call_id=tool, resume=resume, delivery_path=kw.get("delivery_path", "durable_dispatch"),
                            decided_at=now, resume_dispatch_id=new, pending_tool_calls=remaining)  # fmt: skip
        written = new if not remaining else run.dispatch_id
        record_is(m, run, now, decisions=[*run.decisions, decision], dispatch_id=written)
        if remaining:
            assert new is None, outcome
            return
        assert new is not None and (chosen is None or new == chosen), outcome
        resumed = DispatchRecord(
            dispatch_id=new, thread_id=run.thread_id, run_id=run.run_id, priority=priority,
            dispatch_epoch=m.epoch_of(run.thread_id), available_at=now, max_attempts=5, created_at=now, updated_at=now,
        )  # fmt: skip
        record_is(m, resumed, None)

    return succeed(then)


def finish_run(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    termination = kw["termination"]
    if not is_id(kw["run_id"]) or termination["type"] == "suspended":
        return refuse(InvalidArgument, "malformed argument")
    run = m.runs.get(kw["run_id"])
    if run is None:
        return refuse(RunNotFound, "no such run")
    if run.status is DONE:
        return refuse(InvalidTransition, "the run is done already")
    d = m.dispatches.get(run.dispatch_id or "")

    def then(record: Any) -> None:
        error = termination["value"] if termination["type"] == "error" else None
        ended = TerminationReason(type=termination["type"], value=termination.get("value"))
        record_is(m, run, now, status=DONE, termination=ended, error=error, finished_at=now)
        assert record == m.runs[run.run_id], "the returned record is the stored one"
        if d is not None and d.status is QUEUED:
            record_is(m, d, now, status=SUPERSEDED, last_error=RUN_FINISHED_FIRST, completed_at=now)

    return succeed(then)


def commit_messages(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    thread, ids, expected = kw["thread_id"], [x["message_id"] for x in kw["messages"]], kw["expected_first_seq"]
    if not is_id(thread) or not is_id(kw["run_id"]) or not ids or (expected is not None and not 1 <= expected <= 2**62):
        return refuse(InvalidArgument, "malformed argument")
    run = m.runs.get(kw["run_id"])
    if run is None:
        return refuse(RunNotFound, "no such run")
    if run.thread_id != thread:
        return refuse(InvalidArgument, "the run belongs to another thread")
    texts = [x["content"][0]["text"] for x in kw["messages"]]
    stored = [m.messages.get((thread, i)) for i in ids]
    if stored[0] is not None:
        seqs = [s.seq for s in stored if s is not None]
        mine = all(s is not None and s.run_id == run.run_id and s.text == t for s, t in zip(stored, texts, strict=True))
        if mine and seqs == list(range(seqs[0], seqs[0] + len(ids))):
            return returns(_range(thread, run.run_id, seqs[0], ids), "the same messages committed again")
        return refuse(DuplicateMessage, "a message id is taken by other content, another run or another order")
    first = m.committed[thread] + 1
    if expected is not None and expected != first:
        return refuse(SeqConflict, f"the thread continues at {first}")
    if len(set(ids)) != len(ids):
        return refuse(InvalidArgument, "a message id repeats in the commit")
    if any(s is not None for s in stored):
        return refuse(DuplicateMessage, "a later message id is taken")

    def then(result: Any) -> None:
        assert result == _range(thread, run.run_id, first, ids), result
        spans, last = list(run.checkpoints), first + len(ids) - 1
        if spans and spans[-1].last + 1 == first:  # adjacent commits of one run read as one range
            first_seq = spans.pop().first
            spans.append(MessageSeqRange(first=first_seq, last=last))
        else:
            spans.append(MessageSeqRange(first=first, last=last))
        record_is(m, run, now, checkpoints=spans)
        m.committed[thread] = first + len(ids) - 1
        m.commits += 1
        m.checkpoints.append((thread, run.run_id, first, ids, now))
        for offset, (i, text) in enumerate(zip(ids, texts, strict=True)):
            m.messages[(thread, i)] = StoredMessage(run.run_id, text, first + offset)
        m.new_messages = [(thread, x, now) for x in kw["messages"]]

    return succeed(then)


def _range(thread: str, run_id: str, first: int, ids: list[str]) -> Any:
    return CheckpointResult(
        thread_id=thread, run_id=run_id, message_seq_start=first, message_seq_end=first + len(ids) - 1, message_ids=ids
    )


def repair_checkpoints(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    """Messages and their checkpoint commit together, so the repair finds nothing to repair and
    writes nothing, however often it runs (docs/decisions/0007)."""
    committers = {(thread, s.run_id) for (thread, _), s in m.messages.items()}

    def then(report: Any) -> None:
        same(report, repaired_ranges=[], messages_checked=len(m.messages), ranges_checked=m.commits)
        same(report, runs_checked=len(committers), threads_checked=len({t for t, _ in committers}))

    return succeed(then, writes=False)
