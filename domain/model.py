"""Base classes for the mailbox's pydantic domain events and aggregates.

Every aggregate keeps its whole state in ``record``, one frozen pydantic model, so that a
snapshot is the record's JSON and a query result is the record itself.
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


class DomainEvent(BaseModel):
    """A pydantic domain event; ``upstream`` says whether the upstream records its kind."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    originator_id: UUID
    originator_version: int
    timestamp: datetime

    upstream: ClassVar[bool] = False

    @classmethod
    def kind(cls) -> str:
        return cls.__name__


class Snapshot(DomainEvent, CanSnapshotAggregate[UUID]):
    """The record of an aggregate at a version, as JSON."""

    topic: str
    state: dict[str, Any]

    @classmethod
    def take(cls, aggregate: Any) -> Snapshot:
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=aggregate.modified_on,
            topic=get_topic(type(aggregate)),
            state={"record": aggregate.record.model_dump(mode="json")},
        )

    def mutate(self, _: Any) -> Any:
        cls = resolve_topic(self.topic)
        aggregate = cls.__new__(cls)
        aggregate.__base_init__(
            originator_id=self.originator_id,
            originator_version=self.originator_version,
            timestamp=self.timestamp,
        )
        aggregate.record = cls.record_type.model_validate(self.state["record"])
        return aggregate


class MailboxAggregate(BaseAggregate[UUID], Generic[R]):
    """An aggregate whose state is one frozen pydantic record."""

    record_type: ClassVar[type[BaseModel]]
    record: R

    class Event(DomainEvent, CanMutateAggregate[UUID]):
        def apply(self, aggregate: Any) -> None:
            aggregate.record = self.next_record(aggregate.record)

        def next_record(self, record: Any) -> Any:
            return record

    class Created(Event, CanInitAggregate[UUID]):
        originator_topic: str

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.setdefault("timestamp", at(_domain_time(kwargs)))
        super().trigger_event(event_class, **kwargs)

    @classmethod
    def _create_at(cls, event_class: Any, **kwargs: Any) -> Self:
        return cls._create(event_class, timestamp=at(_domain_time(kwargs)), **kwargs)
