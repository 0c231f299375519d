"""Base classes for the mailbox's pydantic domain events and aggregates.

Every aggregate keeps its whole state in ``record``, one frozen pydantic model, so that a
snapshot is the record's JSON and a query result is the record itself.

Stored events outlive the code. Each event class has a ``class_version`` (2 until its stored
shape changes; version 1 still held the originator's id and version, see ``drop_originator``); when it
changes, the class gains ``upcast_v<N>_v<N+1>(state)``, a static method that rewrites a stored state
of version N (a dict, in place) to version N+1, and the mapper runs the chain on every older event it
reads. A record embedded in snapshots does the same with
``record_version`` and ``upcast_record_v<N>_v<N+1>`` on its aggregate class. See docs/events.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, Self, TypeVar
from uuid import UUID

from eventsourcing.domain import (
    BaseAggregate,
    CanInitAggregate,
    CanMutateAggregate,
    CanSnapshotAggregate,
    _check_explicit_topic_is_registered,
)
from eventsourcing.utils import get_topic, resolve_topic
from pydantic import BaseModel, ConfigDict

R = TypeVar("R", bound=BaseModel)


def at(now_ms: int) -> datetime:
    """The event timestamp for a command's ``now``: domain time, not the wall clock."""
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC)


def _domain_time(kwargs: dict[str, Any]) -> int:
    if "now" in kwargs:
        return int(kwargs["now"])
    return int(kwargs["dispatch"].updated_at)


ORIGINATOR_FIELDS = frozenset({"originator_id", "originator_version"})
"""The fields a stored state leaves out since version 2: they are the stored row's own columns."""


def drop_originator(state: dict[str, Any]) -> None:
    """The step to the first version that leaves the originator's id and version to the stored row."""
    for name in ORIGINATOR_FIELDS:
        state.pop(name, None)


class DomainEvent(BaseModel):
    """A pydantic domain event; ``upstream`` says whether the upstream records its kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    originator_id: UUID
    originator_version: int
    timestamp: datetime

    TOPIC: ClassVar[str]
    """The event's stable stored name, ``<Aggregate>.<Event>``: it never changes, whatever the class is called."""
    upstream: ClassVar[bool] = False
    class_version: ClassVar[int] = 2
    """The version of this event's stored shape (see the module docstring)."""

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """The originator's id and version are left to the stored row."""
        drop_originator(state)

    @classmethod
    def kind(cls) -> str:
        return cls.__name__


class Snapshot(DomainEvent, CanSnapshotAggregate[UUID]):
    """The record of an aggregate at a version, as JSON."""

    TOPIC = "Snapshot"

    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Any) -> Snapshot:
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=aggregate.modified_on,
            topic=get_topic(type(aggregate)),
            state={"record": aggregate.record.model_dump(mode="json"), "record_version": aggregate.record_version},
        )

    def mutate(self, _: Any) -> Any:
        cls = resolve_topic(self.topic)
        aggregate = cls.__new__(cls)
        aggregate.__base_init__(
            originator_id=self.originator_id,
            originator_version=self.originator_version,
            timestamp=self.timestamp,
        )
        record = self.state["record"]
        stored = int(self.state.get("record_version", 1))
        if stored != cls.record_version:
            record = upcast(cls, "upcast_record", dict(record), stored, cls.record_version, what=f"{self.topic} record")
        aggregate.record = cls.record_type.model_validate(record)
        return aggregate


class NewerThanThisCode(ValueError):
    """A stored state was written by a newer version of run-mailbox than the one reading it."""


def upcast(owner: Any, prefix: str, state: dict[str, Any], stored: int, current: int, *, what: str) -> dict[str, Any]:
    """Rewrites ``state`` of version ``stored`` to version ``current`` with ``owner``'s
    ``<prefix>_v<N>_v<N+1>`` static methods, in order."""
    if stored > current:
        raise NewerThanThisCode(
            f"{what} is stored at version {stored}, but this code reads versions up to {current}: upgrade run-mailbox"
        )
    for version in range(stored, current):
        getattr(owner, f"{prefix}_v{version}_v{version + 1}")(state)
    return state


class MailboxAggregate(BaseAggregate[UUID], Generic[R]):
    """An aggregate whose state is one frozen pydantic record."""

    TOPIC: ClassVar[str]
    """The aggregate's stable name: stored in snapshots and creation events instead of a module path."""
    record_type: ClassVar[type[BaseModel]]
    record_version: ClassVar[int] = 1
    """The version of the record's stored shape in snapshots (see the module docstring)."""
    record: R

    class Event(DomainEvent, CanMutateAggregate[UUID]):
        def apply(self, aggregate: Any) -> None:
            aggregate.record = self.next_record(aggregate.record)

        def next_record(self, record: Any) -> Any:
            return record

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.setdefault("timestamp", at(_domain_time(kwargs)))
        super().trigger_event(event_class, **kwargs)

    @classmethod
    def _create_at(cls, event_class: Any, *, id: UUID, **kwargs: Any) -> Self:
        """The library's ``_create`` for an aggregate of this model, whose id its caller derives: the
        creation event at the command's time, the aggregate it makes, the event pending. Without the
        library's generic steps (``create_id``'s keyword filtering, the arguments copied twice), which
        were a tenth of a submit's Python (docs/performance-journal.md, 2026-12-05 evening)."""
        _check_explicit_topic_is_registered(event_class)
        event = event_class(
            originator_topic=get_topic(cls),
            originator_id=id,
            originator_version=cls.INITIAL_VERSION,
            timestamp=at(_domain_time(kwargs)),
            **kwargs,
        )
        aggregate: Self = event.mutate(None)
        aggregate.pending_events.append(event)
        return aggregate


class Created(MailboxAggregate.Event, CanInitAggregate[UUID]):
    """Base of the event that creates an aggregate (kept outside the aggregate classes, so the library
    defines no unnamed ``Created`` event on each of them)."""

    originator_topic: str

    def mutate(self, aggregate: Any) -> Any:
        """The library's creation step for this model, where every aggregate's ``__init__`` takes no
        argument and ``apply`` sets its record: without matching the event's fields to the two
        initialisers' parameters on every creation and every replay."""
        assert aggregate is None
        cls = resolve_topic(self.originator_topic)
        created = cls.__new__(cls)
        created.__base_init__(
            originator_id=self.originator_id, originator_version=self.originator_version, timestamp=self.timestamp
        )
        created.__init__()
        self.apply(created)
        return created
