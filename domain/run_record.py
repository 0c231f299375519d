"""The record of a run: its status, current dispatch, termination, tickets, decisions and checkpoints."""

from __future__ import annotations

from run_mailbox.domain.messages import MessageSeqRange
from run_mailbox.domain.permissions import Decision, ToolTicket
from run_mailbox.domain.values import Millis, RunStatus, TerminationReason, Value

TOOL_PERMISSION = "tool_permission"

# Allowed moves (spec payloads section 6); a move to the same status is allowed.
MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.CREATED: frozenset({RunStatus.CREATED, RunStatus.RUNNING, RunStatus.DONE}),
    RunStatus.RUNNING: frozenset({RunStatus.RUNNING, RunStatus.WAITING, RunStatus.DONE}),
    RunStatus.WAITING: frozenset({RunStatus.WAITING, RunStatus.RUNNING, RunStatus.DONE}),
    RunStatus.DONE: frozenset(),
}


class RunRecord(Value):
    run_id: str
    thread_id: str
    agent_id: str
    status: RunStatus = RunStatus.CREATED
    dispatch_id: str | None = None
    termination: TerminationReason | None = None
    error: str | None = None
    created_at: Millis
    updated_at: Millis
    started_at: Millis | None = None
    finished_at: Millis | None = None
    waiting_reason: str | None = None
    tickets: list[ToolTicket] = []
    decisions: list[Decision] = []
    checkpoints: list[MessageSeqRange] = []
    redrive_of: str | None = None
    """The dead-lettered dispatch this run redrives, when a ``redrive`` created it."""

    @property
    def is_done(self) -> bool:
        return self.status is RunStatus.DONE

    def decision(self, decision_id: str) -> Decision | None:
        return next((d for d in self.decisions if d.resume.decision_id == decision_id), None)

    def decided_tool_calls(self) -> set[str]:
        return {d.tool_call_id for d in self.decisions}

    def pending_tickets(self) -> list[ToolTicket]:
        decided = self.decided_tool_calls()
        return [t for t in self.tickets if t.tool_call_id not in decided]


def finished(record: RunRecord, termination: TerminationReason, error: str | None, now: int) -> RunRecord:
    return record.model_copy(
        update={
            "status": RunStatus.DONE,
            "termination": termination,
            "error": error,
            "finished_at": now,
            "updated_at": now,
        }
    )
