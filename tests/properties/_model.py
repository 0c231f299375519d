"""The reference model the state machine keeps beside the service.

Two kinds of knowledge:

- a **mirror** of every dispatch and run record, refreshed from the service after each command
  for exactly the aggregates the command wrote (read off the new log entries), so the oracle
  can predict the next command from the state the service is really in;
- **facts the model owns** and the service must agree with: each thread's epoch and committed
  message count, every message with its run, content and seq, every decision with its content
  and first outcome, the frozen record of every dispatch that reached a terminal status, and
  every command issued with an idempotency key together with its result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.permissions import ToolCallResume
from run_mailbox.domain.run import RunRecord
from run_mailbox.domain.run_events import RunEvent
from run_mailbox.domain.thread_log import ThreadLog
from run_mailbox.domain.values import DispatchStatus

THREADS = ("t1", "t2", "t3")
QUEUED = DispatchStatus.QUEUED
CLAIMED = DispatchStatus.CLAIMED


@dataclass(frozen=True)
class StoredMessage:
    run_id: str
    text: str
    seq: int


@dataclass(frozen=True)
class Keyed:
    """A command that succeeded with an idempotency key, and what it returned."""

    key: str
    command: str
    kwargs: dict[str, Any]
    result: Any


@dataclass
class Observed:
    """What one command wrote: the new log entries and the aggregates they belong to."""

    events: list[tuple[int, DomainEvent]] = field(default_factory=list)
    dispatches: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)
    threads: set[str] = field(default_factory=set)
    versions: dict[UUID, int] = field(default_factory=dict)


@dataclass
class Positions:
    """The log positions the views record: each dispatch's last event; each run's last event
    that changes its status row, and its last dispatch event after its creation; each ticket's
    suspension; each checkpoint."""

    dispatch: dict[str, int] = field(default_factory=dict)
    run: dict[str, int] = field(default_factory=dict)
    run_dispatch: dict[str, int] = field(default_factory=dict)
    run_last_dispatch: dict[str, str] = field(default_factory=dict)
    ticket: dict[tuple[str, str], tuple[int, int, str, int]] = field(default_factory=dict)
    checkpoint: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def track(self, position: int, event: DomainEvent) -> None:
        if isinstance(event, Dispatch.Event):
            record = event.dispatch
            self.dispatch[record.dispatch_id] = position
            if record.run_id in self.run:
                self.run_dispatch[record.run_id] = position
                self.run_last_dispatch[record.run_id] = record.dispatch_id
        elif isinstance(event, RunEvent):
            kind = type(event).__name__
            if kind not in ("ToolPermissionResolved", "MailboxResumeFailed"):
                self.run[event.run_id] = position
            if kind == "RunCreated":
                self.run_dispatch[event.run_id] = position
            elif kind == "RunSuspended":
                for index, ticket in enumerate(event.tickets):  # type: ignore[attr-defined]
                    key = (event.run_id, ticket.tool_call_id)
                    self.ticket.setdefault(key, (position, index, event.dispatch_id, event.now))  # type: ignore[attr-defined]
            elif kind == "ThreadMessagesCheckpointed":
                start = event.message_seq_start  # type: ignore[attr-defined]
                self.checkpoint[(event.thread_id, event.run_id, start)] = position


class Model:
    def __init__(self) -> None:
        self.dispatches: dict[str, DispatchRecord] = {}
        self.runs: dict[str, RunRecord] = {}
        self.epochs: dict[str, int] = dict.fromkeys(THREADS, 0)
        self.committed: dict[str, int] = dict.fromkeys(THREADS, 0)
        self.messages: dict[tuple[str, str], StoredMessage] = {}
        self.commits = 0  # checkpoint events: one per commit that appended messages
        self.decisions: dict[tuple[str, str], tuple[str, ToolCallResume]] = {}
        self.outcomes: dict[tuple[str, str], Any] = {}
        self.decision_facts: dict[tuple[str, str], tuple[int, str, str | None]] = {}  # at, path, dispatch
        self.checkpoints: list[tuple[str, str, int, list[str], int]] = []  # thread, run, first, ids, at
        self.frozen: dict[str, DispatchRecord] = {}
        self.dead_reasons: dict[str, str] = {}  # why each dead letter was dead-lettered, from its event
        self.keyed: list[Keyed] = []
        self.position = 0
        self._threads_by_aggregate: dict[UUID, str] = {}
        self._counter = 0
        # Where in the log each fact was last written (the views keep these positions)
        self.positions = Positions()
        self.new_messages: list[tuple[str, dict[str, Any], int]] = []  # committed by the last command
        self.checked: set[tuple[str, str]] = set()  # records the oracle checked whole in this command

    def fresh(self, prefix: str) -> str:
        """A new identifier, the same in every replay of the same command list."""
        self._counter += 1
        return f"{prefix}{self._counter}"

    # ------------------------------------------------------------------ questions

    def on_thread(self, thread_id: str) -> list[DispatchRecord]:
        return [d for d in self.dispatches.values() if d.thread_id == thread_id]

    def open_on(self, thread_id: str) -> list[DispatchRecord]:
        return [d for d in self.on_thread(thread_id) if d.status in (QUEUED, CLAIMED)]

    def claimed_on(self, thread_id: str) -> DispatchRecord | None:
        claimed = [d for d in self.on_thread(thread_id) if d.status is CLAIMED]
        return claimed[0] if claimed else None

    def queued_on(self, thread_id: str) -> list[DispatchRecord]:
        """The thread's queued dispatches in claim order: priority, age, id."""
        return sorted((d for d in self.on_thread(thread_id) if d.status is QUEUED), key=_order)

    def best_ready(self, thread_id: str, now: int) -> DispatchRecord | None:
        """What a claim of the thread takes now: None while it has a claimed dispatch."""
        if self.claimed_on(thread_id) is not None:
            return None
        ready = [d for d in self.queued_on(thread_id) if d.available_at <= now]
        return ready[0] if ready else None

    def runs_on(self, thread_id: str) -> list[RunRecord]:
        return [r for r in self.runs.values() if r.thread_id == thread_id]

    def epoch_of(self, thread_id: str) -> int:
        return self.epochs.get(thread_id, 0)

    # ------------------------------------------------------------------ refresh

    def observe(self, service: Any) -> Observed:
        """Reads the log entries written since the last call and refreshes the mirror of
        every dispatch and run they touched from the service's live records."""
        seen = Observed()
        while page := service.recorder.select_notifications(start=self.position, limit=500, inclusive_of_start=False):
            for notification in page:
                event = service.mapper.to_domain_event(notification)
                _stored_under_its_name(notification.topic, event)
                seen.events.append((notification.id, event))
                seen.versions[event.originator_id] = event.originator_version
                self._classify(event, seen)
                self.positions.track(notification.id, event)
            self.position = page[-1].id
        for dispatch_id in sorted(seen.dispatches):
            if dispatch_id in self.frozen:
                raise AssertionError(
                    f"terminal dispatch {dispatch_id} got a new event: it was frozen as {self.frozen[dispatch_id]}"
                )
            record = service.get_dispatch(dispatch_id)
            self.dispatches[dispatch_id] = record
            if record.is_terminal:
                self.frozen[dispatch_id] = record
        for run_id in sorted(seen.runs):
            self.runs[run_id] = service.get_run(run_id)
        return seen

    def _classify(self, event: DomainEvent, seen: Observed) -> None:
        if isinstance(event, Dispatch.Event):
            seen.dispatches.add(event.dispatch.dispatch_id)
            if isinstance(event, Dispatch.DispatchDeadLettered):
                self.dead_reasons[event.dispatch.dispatch_id] = event.reason
        elif isinstance(event, RunEvent):
            seen.runs.add(event.run_id)
        elif isinstance(event, (ThreadMailbox.MailboxOpened, ThreadLog.ThreadLogOpened)):
            self._threads_by_aggregate[event.originator_id] = event.thread_id
            seen.threads.add(event.thread_id)
        elif event.originator_id in self._threads_by_aggregate:
            seen.threads.add(self._threads_by_aggregate[event.originator_id])


def _stored_under_its_name(topic: str, event: DomainEvent) -> None:
    """Events are stored under ``<Aggregate>.<Event>`` (docs/events.md), whatever the module."""
    if isinstance(event, Dispatch.Event):
        owner = "Dispatch"
    elif isinstance(event, RunEvent):
        owner = "Run"
    elif isinstance(event, ThreadMailbox.Event):
        owner = "ThreadMailbox"
    elif isinstance(event, ThreadLog.Event):
        owner = "ThreadLog"
    else:
        owner = "ThreadMessage"
    assert topic == f"{owner}.{type(event).__name__}", f"{type(event).__name__} stored as {topic!r}"


def _order(record: DispatchRecord) -> tuple[int, int, str]:
    return (record.priority, record.created_at, record.dispatch_id)
