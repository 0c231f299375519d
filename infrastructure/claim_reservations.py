"""Threads a ``claim_next`` of this service is about to claim, kept from its other concurrent ``claim_next``.

Worker threads of one service that claim at the same moment read the same ready heads, best first,
and would all pick the same threads: one commits, the others' writes are refused as conflicts
(the mailboxes they read changed) and run again. With four consumer threads the retries came to a
third of all the batch writes (decision 0015; docs/performance-journal.md, "2026-12-03 evening"). A
reservation spreads them first, as ``FOR UPDATE SKIP LOCKED`` does for a row queue: a claim takes
the best candidates no concurrent claim of this service holds, holds them until its attempt ends
(committed or not), and gives back at once those it read and passed over.

Reservations are a hint within one process, never a guarantee: the store's version check still
decides every claim, and workers in other processes still meet as conflicts, retried wider.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from run_mailbox.infrastructure.persistence.rows import ReadyThread


class ClaimReservations:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._holder: dict[str, object] = {}

    def held_by_others(self, holder: object) -> int:
        """How many threads concurrent claims other than ``holder`` hold (the extra width to read)."""
        with self._lock:
            return sum(1 for h in self._holder.values() if h is not holder)

    def take(self, holder: object, thread_ids: Iterable[str]) -> list[str]:
        """Those of ``thread_ids`` (in their order) no other holder holds, now held by ``holder``."""
        with self._lock:
            return [t for t in thread_ids if self._holder.setdefault(t, holder) is holder]

    def give_back(self, holder: object, thread_ids: Iterable[str]) -> None:
        """Releases those of ``thread_ids`` that ``holder`` holds."""
        with self._lock:
            for t in thread_ids:
                if self._holder.get(t) is holder:
                    del self._holder[t]


class ReservationHold:
    """What one attempt of one command holds (nothing, without ``reservations``); as a context
    manager, all of it is given back when the attempt ends, however it ends."""

    def __init__(self, reservations: ClaimReservations | None) -> None:
        self._reservations = reservations
        self._held: list[str] = []

    def __enter__(self) -> ReservationHold:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def elsewhere(self) -> int:
        """How many threads the service's concurrent claims hold: a claim reads that much wider."""
        return 0 if self._reservations is None else self._reservations.held_by_others(self)

    def reserve(self, threads: list[ReadyThread]) -> list[ReadyThread]:
        """Those of a claim's candidate ``threads`` no concurrent claim holds, now held by this one."""
        if self._reservations is None:
            return threads
        free = set(self._reservations.take(self, dict.fromkeys(t.thread_id for t in threads)))
        self._held.extend(free.difference(self._held))
        return [t for t in threads if t.thread_id in free]

    def release(self, keep: set[str] | None = None) -> None:
        """Gives back what this attempt holds, except ``keep``."""
        if self._reservations is None or not self._held:
            return
        keep = keep or set()
        self._reservations.give_back(self, [t for t in self._held if t not in keep])
        self._held = [t for t in self._held if t in keep]
