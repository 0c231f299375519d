"""Operator commands that queue dead-lettered work again: one dead letter by id, or every dead letter
matching a filter, a bounded batch per transaction (decision 0012)."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Annotated, Any, ClassVar

from pydantic import Field, Strict, model_validator

from run_mailbox.domain.commands.base import Command, Id, Millis, Priority, command_model
from run_mailbox.domain.commands.batches import MAX_BATCH
from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.results import RedriveManyResult, RedriveResult
from run_mailbox.domain.values import DeadLetterReason

DEFAULT_REDRIVE_BATCH = 100
BatchLimit = Annotated[int, Strict(), Field(ge=1, le=MAX_BATCH)]
"""How many items one batch command handles at most, in one transaction (≤ 1000)."""


def _ordered(since: int | None, until: int | None) -> None:
    if since is not None and until is not None and until < since:
        raise InvalidArgument("until", until, f"must not be before since={since}")


@command_model
class DeadLetterFilter:
    """Which dead letters: those matching every filter given. ``since`` and ``until`` bound when the
    dispatch was dead-lettered (milliseconds, both included)."""

    _: KW_ONLY
    thread_id: Id | None = None
    agent_id: Id | None = None
    reason: DeadLetterReason | None = None
    since: Millis | None = None
    until: Millis | None = None

    @model_validator(mode="after")
    def _range(self) -> DeadLetterFilter:
        _ordered(self.since, self.until)
        return self


@command_model
class Redrive(Command[RedriveResult]):
    """Queues the work of a dead-lettered dispatch again: a new run on the same thread, for the same
    agent, whose ``RunCreated`` names the dead letter (``redrive_of``), with a new dispatch due now.

    The dead letter and its run stay as they are (both are final). The new run's id is derived from the
    dead letter's id, so redriving the same dead letter again is refused with ``AlreadyRedriven``
    (naming the run) and writes nothing. The new dispatch keeps the dead letter's priority (unless
    ``priority`` is given), dedupe key and ``max_attempts``; a dispatch that is not dead-lettered is
    refused (``InvalidTransition``).
    """

    name: ClassVar[str] = "redrive"
    result_type: ClassVar[type] = RedriveResult

    dispatch_id: Id
    _: KW_ONLY
    priority: Priority | None = None


@command_model
class RedriveMany(Command[RedriveManyResult]):
    """Redrives, in one transaction, up to ``limit`` dead letters that match every filter given and
    were not redriven yet, oldest dead letter first; each as ``redrive`` would.

    Filters: ``thread_id``, ``agent_id`` (the run's agent), ``reason`` (``attempts_exhausted``,
    ``lease_expired``, ``permanent_failure``), and ``since``/``until`` (when the dispatch was
    dead-lettered, milliseconds, both included). One that ``redrive`` would refuse (its dedupe key is
    now held by another open dispatch) is listed in ``refused`` and the others are redriven.
    ``more`` says whether matching dead letters are left: call again until it is False (each call is
    one bounded transaction).
    """

    name: ClassVar[str] = "redrive_many"
    result_type: ClassVar[type] = RedriveManyResult

    _: KW_ONLY
    thread_id: Id | None = None
    agent_id: Id | None = None
    reason: DeadLetterReason | None = None
    since: Millis | None = None
    until: Millis | None = None
    limit: BatchLimit = DEFAULT_REDRIVE_BATCH
    priority: Priority | None = None

    @model_validator(mode="after")
    def _range(self) -> RedriveMany:
        _ordered(self.since, self.until)
        return self

    def filter(self) -> DeadLetterFilter:
        """The dead letters this command redrives, as a filter."""
        fields: dict[str, Any] = {
            "thread_id": self.thread_id,
            "agent_id": self.agent_id,
            "reason": self.reason,
            "since": self.since,
            "until": self.until,
        }
        return DeadLetterFilter(**fields)
