"""Commands of the tool-permission cycle: suspend a run, decide for a tool call, finish a run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import KW_ONLY
from typing import ClassVar

from pydantic import field_validator

from run_mailbox.domain.commands.base import (
    Command,
    Id,
    Priority,
    check_free_text,
    check_identifier,
    command_model,
)
from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.limits import Measure, measure_chars, measure_count, measure_json
from run_mailbox.domain.permissions import DeliveryPath, ToolCallResume, ToolTicket
from run_mailbox.domain.results import DecisionOutcome
from run_mailbox.domain.run import RunRecord
from run_mailbox.domain.values import TerminationReason


@command_model
class Suspend(Command[RunRecord]):
    """The running run waits for a decision on each of ``tickets`` (tool calls it wants to make);
    its dispatch is acked (delivery done). A ticket is ``{"tool_call_id", "tool_name", "arguments"}``
    or a :class:`ToolTicket`."""

    name: ClassVar[str] = "suspend"
    result_type: ClassVar[type] = RunRecord

    dispatch_id: Id
    _: KW_ONLY
    claim_token: Id
    tickets: list[ToolTicket]

    @field_validator("tickets")
    @classmethod
    def _ticket_ids(cls, tickets: list[ToolTicket]) -> list[ToolTicket]:
        for i, ticket in enumerate(tickets):
            check_identifier(f"tickets[{i}].tool_call_id", ticket.tool_call_id)
            check_identifier(f"tickets[{i}].tool_name", ticket.tool_name)
        return tickets

    def measure(self) -> Iterator[Measure]:
        yield from super().measure()
        yield measure_count("tickets", f"<{len(self.tickets)} tickets>", len(self.tickets), "max_tickets", "tickets")
        total = 0
        for i, ticket in enumerate(self.tickets):
            yield measure_chars(f"tickets[{i}].tool_call_id", ticket.tool_call_id, "max_id_chars")
            yield measure_chars(f"tickets[{i}].tool_name", ticket.tool_name, "max_id_chars")
            arguments = measure_json(f"tickets[{i}].arguments", ticket.arguments)
            total += arguments.size
            yield arguments
        yield measure_count("tickets", f"<{len(self.tickets)} tickets>", total, "max_command_bytes", "bytes")


@command_model
class Decide(Command[DecisionOutcome]):
    """Delivers one decision for a suspended tool call, at least once: the same ``decision_id``
    with the same content returns the first outcome and writes nothing, whatever the delivery
    path; other content raises DecisionConflict. The last pending decision queues a resume
    dispatch for the same run in the same transaction (``resume_dispatch_id``, default a new id),
    at ``priority`` (default: the priority of the run's own dispatch).

    ``resume`` is ``{"decision_id", "action": "resume" | "cancel", "result", "reason", "updated_at"}``
    or a :class:`ToolCallResume`; ``result.approved`` (a JSON boolean) also records
    ToolPermissionResolved.
    """

    name: ClassVar[str] = "decide"
    result_type: ClassVar[type] = DecisionOutcome
    not_digested: ClassVar[frozenset[str]] = frozenset({"delivery_path"})  # one decision, whatever the path

    run_id: Id
    tool_call_id: Id
    resume: ToolCallResume
    _: KW_ONLY
    delivery_path: DeliveryPath = "durable_dispatch"
    resume_dispatch_id: Id | None = None
    priority: Priority | None = None

    @field_validator("resume")
    @classmethod
    def _decision_id(cls, resume: ToolCallResume) -> ToolCallResume:
        check_identifier("resume.decision_id", resume.decision_id)
        check_free_text("resume.reason", resume.reason)
        return resume

    def measure(self) -> Iterator[Measure]:
        yield from super().measure()
        yield measure_chars("resume.decision_id", self.resume.decision_id, "max_id_chars")
        if self.resume.reason is not None:
            yield measure_chars("resume.reason", self.resume.reason, "max_text_chars")
        yield measure_json("resume.result", self.resume.result)


@command_model
class FinishRun(Command[RunRecord]):
    """Ends the run (done is absorbing): ``termination`` is ``{"type": ..., "value": ...}`` or a
    :class:`TerminationReason`; an ``error`` termination records RunErrored. A queued dispatch of
    the run is superseded; a claimed one is left for its owner to ack."""

    name: ClassVar[str] = "finish_run"
    result_type: ClassVar[type] = RunRecord

    run_id: Id
    termination: TerminationReason

    @field_validator("termination")
    @classmethod
    def _not_suspended(cls, termination: TerminationReason) -> TerminationReason:
        if termination.type == "suspended":
            raise InvalidArgument("termination", termination.type, "a suspension is recorded with suspend()")
        return termination

    def measure(self) -> Iterator[Measure]:
        yield from super().measure()
        yield measure_json("termination.value", self.termination.value)
