"""Batch commands: many runs queued, or many claimed dispatches acked, in one transaction.

A worker loop that claims ten dispatches with ``claim_next(limit=10, start=True)`` and acks them
with one ``ack_many`` pays for two transactions per ten runs instead of thirty.
"""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Any, ClassVar

from pydantic import field_validator

from run_mailbox.domain.commands.base import Command, Id, command_model
from run_mailbox.domain.commands.dispatching import Submit
from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.results import AckManyResult

MAX_BATCH = 1_000


def _no_time_or_key(field: str, items: list[Any]) -> None:
    for i, item in enumerate(items):
        for name in ("now", "idempotency_key"):
            if getattr(item, name) is not None:
                raise InvalidArgument(f"{field}[{i}].{name}", getattr(item, name), f"give {name} to the batch itself")


def _bounded(field: str, items: list[Any]) -> None:
    if not items:
        raise InvalidArgument(field, items, "must hold at least one item")
    if len(items) > MAX_BATCH:
        raise InvalidArgument(field, f"<{len(items)} items>", f"at most {MAX_BATCH} per batch")


@command_model
class SubmitMany(Command[list[DispatchRecord]]):
    """Queues many runs in one transaction (all of them, or none: a refusal names the run by its
    place, ``runs[3]``); returns their dispatches in the same order. Each run is a ``Submit``
    (``Submit("thread-1", "run-1", priority=10)``) without its own ``now`` or key."""

    name: ClassVar[str] = "submit_many"
    result_type: ClassVar[Any] = list[DispatchRecord]

    runs: list[Submit]

    @field_validator("runs")
    @classmethod
    def _distinct_runs(cls, runs: list[Submit]) -> list[Submit]:
        _bounded("runs", runs)
        _no_time_or_key("runs", runs)
        seen_runs: dict[str, int] = {}
        seen_dispatches: dict[str, int] = {}
        for i, run in enumerate(runs):
            if run.run_id in seen_runs:
                raise InvalidArgument(f"runs[{i}].run_id", run.run_id, f"runs[{seen_runs[run.run_id]}] has it too")
            seen_runs[run.run_id] = i
            if run.dispatch_id is not None:
                if run.dispatch_id in seen_dispatches:
                    where = f"runs[{seen_dispatches[run.dispatch_id]}] has it too"
                    raise InvalidArgument(f"runs[{i}].dispatch_id", run.dispatch_id, where)
                seen_dispatches[run.dispatch_id] = i
        return runs


@command_model
class AckItem:
    """One claimed dispatch to ack: its id and the claim token its claim returned."""

    dispatch_id: Id
    _: KW_ONLY
    claim_token: Id


@command_model
class AckMany(Command[AckManyResult]):
    """Acks many claimed dispatches in one transaction. Each is acked as ``ack`` would, or refused
    on its own (a wrong token, a dispatch an interrupt fenced: it is superseded, as ``ack`` would
    leave it); the result lists the acked records and the refusals, in the order given."""

    name: ClassVar[str] = "ack_many"
    result_type: ClassVar[type] = AckManyResult

    acks: list[AckItem]

    @field_validator("acks")
    @classmethod
    def _distinct_dispatches(cls, acks: list[AckItem]) -> list[AckItem]:
        _bounded("acks", acks)
        seen: dict[str, int] = {}
        for i, item in enumerate(acks):
            if item.dispatch_id in seen:
                raise InvalidArgument(
                    f"acks[{i}].dispatch_id", item.dispatch_id, f"acks[{seen[item.dispatch_id]}] has it too"
                )
            seen[item.dispatch_id] = i
        return acks
