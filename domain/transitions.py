"""The state machines of Dispatch and Run as data: which event moves which status to which.

``DISPATCH_TRANSITIONS`` lists, for each dispatch status, the statuses the dispatch may move to
next and the event that moves it (the methods of :class:`~run_mailbox.domain.dispatch.Dispatch`
raise exactly these; ``tests/unit/test_transitions.py`` drives random command sequences and checks
every move they make against it, and that every listed move happens). ``RUN_TRANSITIONS`` does the
same for a run: its moves are those ``run_record.MOVES`` allows (a test keeps the two in step),
named by event. ``None`` as a source is the creation of the aggregate. The documentation's state
diagrams are generated from these tables (``python -m run_mailbox.reference``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, NamedTuple

from run_mailbox.domain.values import DispatchStatus, RunStatus

_D = DispatchStatus
_R = RunStatus


class Transition(NamedTuple):
    """One move of a state machine: ``event`` takes the aggregate from ``source`` to ``target``."""

    source: str | None
    """The status before (None: the event creates the aggregate)."""
    event: str
    """The event's kind (its class name)."""
    target: str
    """The status after (the same as ``source`` for an event that keeps the status)."""


# status -> ((event, next status), ...): every move a dispatch makes.
DISPATCH_TRANSITIONS: dict[DispatchStatus | None, tuple[tuple[str, DispatchStatus], ...]] = {
    None: (("RunQueued", _D.QUEUED),),
    _D.QUEUED: (
        ("DispatchClaimed", _D.CLAIMED),
        ("RunCancelled", _D.CANCELLED),
        ("RunSuperseded", _D.SUPERSEDED),
    ),
    _D.CLAIMED: (
        ("LeaseExtended", _D.CLAIMED),
        ("RunSubmitted", _D.CLAIMED),
        ("RunInterrupted", _D.CLAIMED),
        ("DispatchAcked", _D.ACKED),
        ("RunRescheduled", _D.QUEUED),
        ("DispatchDeadLettered", _D.DEAD_LETTER),
        ("RunSuperseded", _D.SUPERSEDED),
    ),
    _D.ACKED: (),
    _D.CANCELLED: (),
    _D.SUPERSEDED: (),
    _D.DEAD_LETTER: (),
}

# status -> ((event, next status), ...): every move a run makes. Events that keep the status
# (a decision, a checkpoint) are listed as moves to the same status. (``record_start`` of a running
# run's own dispatch, after a retry, raises nothing: a run has one open dispatch at a time.)
RUN_TRANSITIONS: dict[RunStatus | None, tuple[tuple[str, RunStatus], ...]] = {
    None: (("RunCreated", _R.CREATED),),
    _R.CREATED: (
        ("RunStarted", _R.RUNNING),
        ("ThreadMessagesCheckpointed", _R.CREATED),
        ("RunFinished", _R.DONE),
        ("RunErrored", _R.DONE),
    ),
    _R.RUNNING: (
        ("ThreadMessagesCheckpointed", _R.RUNNING),
        ("RunSuspended", _R.WAITING),
        ("RunFinished", _R.DONE),
        ("RunErrored", _R.DONE),
    ),
    _R.WAITING: (
        ("MailboxDecisionReceived", _R.WAITING),
        ("ToolPermissionResolved", _R.WAITING),
        ("MailboxResumeFailed", _R.WAITING),
        ("ThreadMessagesCheckpointed", _R.WAITING),
        ("RunStarted", _R.RUNNING),
        ("RunFinished", _R.DONE),
        ("RunErrored", _R.DONE),
    ),
    _R.DONE: (("ThreadMessagesCheckpointed", _R.DONE),),
}


Table = Mapping[Any, Sequence[tuple[str, StrEnum]]]
"""A transition table: status (None for creation) -> (event, next status) pairs."""


def transitions(table: Table) -> list[Transition]:
    """The table as a flat list of moves, in the table's order."""
    flat = []
    for source, moves in table.items():
        for event, target in moves:
            flat.append(Transition(None if source is None else source.value, event, target.value))
    return flat


def targets_of(table: Table, event: str) -> list[str]:
    """The statuses ``event`` may leave the aggregate in, in declaration order (without repeats)."""
    found: list[str] = []
    for move in transitions(table):
        if move.event == event and move.target not in found:
            found.append(move.target)
    return found
