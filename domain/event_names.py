"""The stable names events and aggregates are stored under: a contract with every log ever written.

Each aggregate and each of its events declares its stored name as ``TOPIC`` (the eventsourcing
library's explicit topics): ``Dispatch``, ``Dispatch.DispatchClaimed``, ``Snapshot``. Stored
events, snapshots and creation events carry these names, never a module path, so moving or
renaming a module or a class changes nothing stored (a renamed class keeps its ``TOPIC``).
Logs written by run-mailbox 0.1.0, whose topics were module paths
(``domain.dispatch:Dispatch.RunQueued``), read through ``LEGACY_TOPICS``.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.utils import register_topic

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.model import DomainEvent, MailboxAggregate, Snapshot
from run_mailbox.domain.run import Run
from run_mailbox.domain.thread_log import ThreadLog, ThreadMessage

AGGREGATES: tuple[type[MailboxAggregate[Any]], ...] = (Dispatch, Run, ThreadMailbox, ThreadLog, ThreadMessage)

# Where run-mailbox 0.1.0 defined each aggregate (its stored topics were module paths).
_LEGACY_MODULES = {
    "Dispatch": "domain.dispatch",
    "Run": "domain.run",
    "ThreadMailbox": "domain.mailbox",
    "ThreadLog": "domain.thread_log",
    "ThreadMessage": "domain.thread_log",
}


def _events_of(aggregate: type[MailboxAggregate[Any]]) -> list[type[DomainEvent]]:
    # (The library may define a nested event class again as a subclass of the aggregate's own
    # ``Event``; the class it leaves on the aggregate is the one stored, its TOPIC inherited.)
    return [
        value
        for attribute, value in vars(aggregate).items()
        if isinstance(value, type) and issubclass(value, DomainEvent) and attribute != "Event"
    ]


EVENTS: dict[str, type[DomainEvent]] = {Snapshot.TOPIC: Snapshot}
for _aggregate in AGGREGATES:
    EVENTS.update({cls.TOPIC: cls for cls in _events_of(_aggregate)})

LEGACY_TOPICS: dict[str, str] = {"domain.model:Snapshot": Snapshot.TOPIC}
for _aggregate in AGGREGATES:
    _module = _LEGACY_MODULES[_aggregate.TOPIC]
    LEGACY_TOPICS[f"{_module}:{_aggregate.__name__}"] = _aggregate.TOPIC
    for _event in _events_of(_aggregate):
        LEGACY_TOPICS[f"{_module}:{_aggregate.__name__}.{_event.__name__}"] = _event.TOPIC

# Creation events and snapshots of 0.1.0 name their aggregate class by its old topic, which the
# library resolves itself: register every legacy topic, and the snapshot's stable one.
register_topic(Snapshot.TOPIC, Snapshot)
for _legacy, _name in LEGACY_TOPICS.items():
    _target = EVENTS.get(_name) or next(a for a in AGGREGATES if _name == a.TOPIC)
    register_topic(_legacy, _target)


def name_of(event_class: type[Any]) -> str:
    """The stored name of an event class (KeyError for a class that is not a stored event); a
    subclass made in a test is stored as the class it extends."""
    name = getattr(event_class, "TOPIC", None)
    if not isinstance(name, str) or name not in EVENTS or not issubclass(event_class, EVENTS[name]):
        raise KeyError(f"{event_class.__qualname__} is not one of the mailbox's stored events")
    return name


def event_class(name: str) -> type[DomainEvent]:
    """The event class stored under ``name`` (a current or a legacy name)."""
    try:
        return EVENTS[LEGACY_TOPICS.get(name, name)]
    except KeyError:
        raise KeyError(f"no mailbox event is stored under {name!r}") from None


def topics_of(*event_classes: type[DomainEvent]) -> list[str]:
    """Every topic events of these classes may be stored under (for topic filters on the log)."""
    wanted = {name_of(cls) for cls in event_classes}
    return sorted(wanted) + sorted(old for old, new in LEGACY_TOPICS.items() if new in wanted)
