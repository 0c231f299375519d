"""The ready heads: one row per thread that has queued work and no claimed dispatch, naming the
thread's best queued dispatch (priority, then age) and when its next queued dispatch is due.

Claiming across threads walks this table in claim order and stops after the threads it needs
(an index gives them in O(log n)), instead of ranking every queued dispatch of every thread: the
cost of a claim does not grow with the backlog. The rows are written with the events, in the same
transaction, from the thread mailbox's state after the command.

A thread whose best queued dispatch is not due yet but which has another one due is found by
``next_available_at``; the claim then takes the best due dispatch from the thread's mailbox.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from run_mailbox.domain.mailbox import MailboxRecord
from run_mailbox.infrastructure.persistence.rows import DispatchIndexRow


@dataclass(frozen=True)
class ReadyHeadRow:
    thread_id: str
    dispatch_id: str
    priority: int
    created_at: int
    available_at: int
    next_available_at: int

    def as_tuple(self) -> tuple[str, str, int, int, int, int]:
        return (
            self.thread_id,
            self.dispatch_id,
            self.priority,
            self.created_at,
            self.available_at,
            self.next_available_at,
        )


HEAD_COLUMNS = "thread_id, dispatch_id, priority, created_at, available_at, next_available_at"


def head_of(mailbox: MailboxRecord) -> ReadyHeadRow | None:
    """The thread's head row, or None when it has a claimed dispatch or nothing queued."""
    if any(entry.claimed for entry in mailbox.open.values()) or not mailbox.open:
        return None
    best = min(mailbox.open, key=lambda d: mailbox.open[d].order(d))
    entry = mailbox.open[best]
    return ReadyHeadRow(
        thread_id=mailbox.thread_id,
        dispatch_id=best,
        priority=entry.priority,
        created_at=entry.created_at,
        available_at=entry.available_at,
        next_available_at=min(e.available_at for e in mailbox.open.values()),
    )


def heads_of_index(rows: Iterable[DispatchIndexRow]) -> list[ReadyHeadRow]:
    """The head rows the dispatch index implies (what ``head_of`` gives for every thread)."""
    by_thread: dict[str, list[DispatchIndexRow]] = defaultdict(list)
    for row in rows:
        if row.status in ("queued", "claimed"):
            by_thread[row.thread_id].append(row)
    heads = []
    for thread_id, open_rows in sorted(by_thread.items()):
        if any(r.status == "claimed" for r in open_rows):
            continue
        best = min(open_rows, key=lambda r: (r.priority, r.created_at, r.dispatch_id))
        next_due = min(r.available_at for r in open_rows)
        heads.append(
            ReadyHeadRow(thread_id, best.dispatch_id, best.priority, best.created_at, best.available_at, next_due)
        )
    return heads


ClaimKey = tuple[int, int, str]


def claim_key(head: ReadyHeadRow) -> ClaimKey:
    """A head's place in claim order: priority, then age, then dispatch id (unique, so no two tie)."""
    return (head.priority, head.created_at, head.dispatch_id)


class HeadsInClaimOrder:
    """The ready heads of the in-memory recorder, with what the SQL recorders' two indexes give: every head
    in claim order, and apart those whose thread has a dispatch due before its head (``next_available_at <
    available_at``). Both are sorted lists kept with ``bisect``, so a claim walks from the best head and stops
    after the threads it needs, as the SQL index walks do, instead of looking at every idle thread."""

    def __init__(self, heads: Iterable[ReadyHeadRow] = ()) -> None:
        self._by_thread: dict[str, ReadyHeadRow] = {}
        self._order: list[tuple[ClaimKey, str]] = []
        self._behind: list[tuple[ClaimKey, str]] = []
        for head in heads:
            self.put(head)

    def put(self, head: ReadyHeadRow) -> None:
        self.drop(head.thread_id)
        entry = (claim_key(head), head.thread_id)
        bisect.insort(self._order, entry)
        if head.next_available_at < head.available_at:
            bisect.insort(self._behind, entry)
        self._by_thread[head.thread_id] = head

    def drop(self, thread_id: str) -> None:
        head = self._by_thread.pop(thread_id, None)
        if head is None:
            return
        entry = (claim_key(head), thread_id)
        del self._order[bisect.bisect_left(self._order, entry)]
        if head.next_available_at < head.available_at:
            del self._behind[bisect.bisect_left(self._behind, entry)]

    def heads(self) -> list[ReadyHeadRow]:
        return list(self._by_thread.values())

    def candidates(self, now: int, limit: int) -> list[ReadyHeadRow]:
        """The threads a claim at ``now`` should look at: the best ``limit`` heads that are due, then
        threads whose head is not due but that have a due dispatch (the SQL recorders' two index walks)."""
        due = self._walk(self._order, lambda h: h.available_at <= now, limit)
        behind = self._walk(self._behind, lambda h: h.available_at > now and h.next_available_at <= now, limit)
        return due + behind

    def _walk(
        self, order: list[tuple[ClaimKey, str]], wanted: Callable[[ReadyHeadRow], bool], limit: int
    ) -> list[ReadyHeadRow]:
        found: list[ReadyHeadRow] = []
        for _, thread_id in order:
            if len(found) >= limit:
                break
            head = self._by_thread[thread_id]
            if wanted(head):
                found.append(head)
        return found
