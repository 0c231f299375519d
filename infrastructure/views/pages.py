"""The log read a page at a time, for view runners: fetch the stored rows, then decode them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from eventsourcing.persistence import Notification
from eventsourcing.utils import TopicError, resolve_topic

from run_mailbox.domain.model import DomainEvent
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.projections.runner import Kinds, Pair


class LogPages:
    """A ``PageReader`` over a service's log: ``fetch`` may run on another thread (the recorder's
    reads take a pooled connection each); ``decode`` turns the rows into (position, event) pairs,
    only those of the classes a view handles when it names them."""

    def __init__(self, service: MailboxService) -> None:
        self.service = service
        self._wanted: dict[tuple[Kinds, str], bool] = {}

    def fetch(self, after: int, limit: int) -> Sequence[Notification]:
        return self.service.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)

    def decode(self, rows: Sequence[Notification], kinds: Kinds | None = None) -> list[Pair]:
        mapper = self.service.mapper
        return [
            (n.id, cast(DomainEvent, mapper.to_domain_event(n)))
            for n in rows
            if kinds is None or self._wants(kinds, n.topic)
        ]

    def _wants(self, kinds: Kinds, topic: str) -> bool:
        wanted = self._wanted.get((kinds, topic))
        if wanted is None:
            try:
                cls = resolve_topic(topic)
            except TopicError:  # decoded anyway: the mapper raises its own error about it
                return True
            wanted = self._wanted[kinds, topic] = isinstance(cls, type) and issubclass(cls, kinds)
        return wanted

    def last_position(self, rows: Sequence[Notification]) -> int:
        return rows[-1].id if rows else 0

    def __call__(self, after: int, limit: int) -> list[Pair]:
        return self.decode(self.fetch(after, limit))
