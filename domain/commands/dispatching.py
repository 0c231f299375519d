"""Commands that put work on a thread or take it off: submit, cancel, interrupt."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import ClassVar

from run_mailbox.domain import policies
from run_mailbox.domain.commands.base import Command, Id, MaxAttempts, Millis, Priority, command_model
from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.results import InterruptResult


@command_model
class Submit(Command[DispatchRecord]):
    """Queues a new run on its thread and returns its dispatch.

    ``priority``: 0 is the highest, 255 the lowest (default 128); a thread's dispatches are
    claimed by priority, then age. ``dedupe_key``: refused while another open dispatch of the
    thread holds it. ``available_at``: not claimable before then (default: now).
    ``dispatch_id``: the new dispatch's id (default: a new UUIDv7); a used one is refused.
    """

    name: ClassVar[str] = "submit"
    result_type: ClassVar[type] = DispatchRecord

    thread_id: Id
    run_id: Id
    _: KW_ONLY
    agent_id: Id = "default"
    priority: Priority = policies.DEFAULT_PRIORITY
    dedupe_key: Id | None = None
    max_attempts: MaxAttempts = policies.DEFAULT_MAX_ATTEMPTS
    available_at: Millis | None = None
    dispatch_id: Id | None = None


@command_model
class Cancel(Command[DispatchRecord]):
    """Cancels a queued dispatch; its run ends cancelled (RunCancelled). A claimed one is refused."""

    name: ClassVar[str] = "cancel"
    result_type: ClassVar[type] = DispatchRecord

    dispatch_id: Id


@command_model
class Interrupt(Command[InterruptResult]):
    """Advances the thread's dispatch epoch: every queued dispatch is superseded (its run ends
    cancelled), and the claimed one is interrupted and fenced on its owner's next write."""

    name: ClassVar[str] = "interrupt"
    result_type: ClassVar[type] = InterruptResult

    thread_id: Id
