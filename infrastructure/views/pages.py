"""The log read a page at a time, for view runners: fetch the stored rows, then decode them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from eventsourcing.persistence import Notification

from run_mailbox.domain.model import DomainEvent
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.projections.runner import Pair


class LogPages:
    """A ``PageReader`` over a service's log: ``fetch`` may run on another thread (the recorder's
    reads take a pooled connection each); ``decode`` turns the rows into (position, event) pairs."""

    def __init__(self, service: MailboxService) -> None:
        self.service = service

    def fetch(self, after: int, limit: int) -> Sequence[Notification]:
        return self.service.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)

    def decode(self, rows: Sequence[Notification]) -> list[Pair]:
        mapper = self.service.mapper
        return [(n.id, cast(DomainEvent, mapper.to_domain_event(n))) for n in rows]

    def __call__(self, after: int, limit: int) -> list[Pair]:
        return self.decode(self.fetch(after, limit))
