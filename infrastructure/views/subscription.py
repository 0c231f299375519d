"""The library's Postgres subscription, decoded for the view runners."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, cast

from run_mailbox.domain.model import DomainEvent

Pair = tuple[int, DomainEvent]


class DecodedSubscription:
    """Yields decoded (position, event) pairs as they are recorded, after position ``after``."""

    HEARTBEAT_SECONDS = 1.0

    def __init__(self, recorder: Any, mapper: Any, after: int) -> None:
        self._mapper = mapper
        self._subscription = recorder.subscribe(gt=after)
        self._stopped = threading.Event()
        # eventsourcing 9.5.6 starts the subscription's first read before its LISTEN is in
        # place, so a commit in between is announced to no one and the view would wait for
        # the next event. A periodic wake-up bounds that wait (each costs one indexed read).
        threading.Thread(target=self._heartbeat, name="view-subscription-heartbeat", daemon=True).start()

    def _heartbeat(self) -> None:
        wake = getattr(self._subscription, "_has_been_notified", None)
        while wake is not None and not self._stopped.wait(self.HEARTBEAT_SECONDS):
            wake.set()

    def __iter__(self) -> Iterator[Pair]:
        for notification in self._subscription:
            yield notification.id, cast(DomainEvent, self._mapper.to_domain_event(notification))

    def stop(self) -> None:
        self._stopped.set()
        self._subscription.stop()
