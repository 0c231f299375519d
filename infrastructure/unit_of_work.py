"""One command's view of the aggregates it reads and changes, saved in one transaction.

A unit of work lives for one attempt of one command: it loads each aggregate at most once,
remembers the versions it read (so a refusal resting on a stale read can be retried), and hands
the changed aggregates to the runner's ``save``. ``now`` is the command's time, ``tables`` the
recorder's side tables, ``ids`` the ids the command generates (the same on every attempt).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.errors import DispatchNotFound, MailboxError, RunNotFound
from run_mailbox.domain.ids import dispatch_aggregate_id, mailbox_aggregate_id, run_aggregate_id
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.run import Run
from run_mailbox.domain.thread_log import ThreadLog, ThreadMessage, message_aggregate_id, thread_log_id
from run_mailbox.infrastructure.aggregate_cache import AggregateCache
from run_mailbox.infrastructure.claim_reservations import ReservationHold
from run_mailbox.infrastructure.persistence.rows import MailboxTables, ReadyThread

A = TypeVar("A")
UNSNAPSHOTTED = (Dispatch, ThreadMessage)
"""Aggregates never snapshotted: their reads skip the snapshot table."""


class GeneratedIds:
    """Ids a command generates, by purpose: each is made once and kept for every attempt."""

    def __init__(self, factory: Callable[[], str]) -> None:
        self._factory = factory
        self._made: dict[str, str] = {}

    def __call__(self, purpose: str) -> str:
        if purpose not in self._made:
            self._made[purpose] = self._factory()
        return self._made[purpose]


class UnitOfWork:
    def __init__(
        self,
        repository: Repository[UUID],
        *,
        now: int,
        tables: MailboxTables,
        ids: GeneratedIds,
        attempt: int = 0,
        unsnapshotted: Repository[UUID] | None = None,
        cache: AggregateCache | None = None,
        mapper: Any = None,
        claims: ReservationHold | None = None,
    ) -> None:
        self._repository = repository
        self.claims = claims or ReservationHold(None)
        """The threads this attempt holds from the service's concurrent claims (``claim_reservations``)."""
        self._mapper = mapper
        self._read_many = getattr(tables, "read_aggregates", None) if mapper is not None else None
        self._cache = cache
        self._unsnapshotted = unsnapshotted or repository
        self.now = now
        self.tables = tables
        self.ids = ids
        self.attempt = attempt
        """0 on the first try; a retry after a conflict may check what the first try assumed."""
        self._aggregates: dict[UUID, Any] = {}
        self._loaded_versions: dict[UUID, int] = {}
        self._from_cache: set[UUID] = set()
        self._missing: set[UUID] = set()
        self._presumed: set[UUID] = set()
        self.error_after_save: MailboxError | None = None

    def _find(self, aggregate_id: UUID, kind: type[A]) -> A | None:
        if aggregate_id in self._aggregates:
            return self._aggregates[aggregate_id]  # type: ignore[no-any-return]
        if aggregate_id in self._missing:
            return None
        if self._take_cached(aggregate_id):
            return self._aggregates[aggregate_id]  # type: ignore[no-any-return]
        self.preload([aggregate_id], kind)
        found = self._aggregates.get(aggregate_id)
        assert found is None or isinstance(found, kind)
        return found

    def preload(self, aggregate_ids: list[UUID], kind: type[Any]) -> None:
        """Reads the aggregates of ``kind`` this unit has not read yet, from the cache, else from the
        store: in one query where the store can (Postgres), one by one elsewhere."""
        self.preload_kinds([(aggregate_ids, kind)])

    def preload_kinds(self, groups: list[tuple[list[UUID], type[Any]]]) -> None:
        """``preload`` for aggregates of several kinds at once: one query for them all (Postgres)."""
        wanted_groups = []
        for aggregate_ids, kind in groups:
            wanted = [i for i in dict.fromkeys(aggregate_ids) if i not in self._aggregates and i not in self._missing]
            wanted = [i for i in wanted if not self._take_cached(i)]
            if wanted:
                wanted_groups.append((wanted, kind))
        if not wanted_groups:
            return
        if self._read_many is not None:
            wanted = list(dict.fromkeys(i for ids, _ in wanted_groups for i in ids))
            snapshotted = any(kind not in UNSNAPSHOTTED for _, kind in wanted_groups)
            stored = self._read_many(wanted, snapshots=snapshotted)
            for aggregate_id in wanted:
                aggregate = None
                for stored_event in stored.get(aggregate_id, ()):
                    # the library's project_aggregate would also assert isinstance() against a
                    # runtime-checkable protocol per event: a third of a cold claim's CPU on Python 3.11
                    aggregate = self._mapper.to_domain_event(stored_event).mutate(aggregate)
                self._loaded(aggregate_id, aggregate)
            return
        for wanted, kind in wanted_groups:
            repository = self._unsnapshotted if kind in UNSNAPSHOTTED else self._repository
            for aggregate_id in wanted:
                try:
                    self._loaded(aggregate_id, repository.get(aggregate_id))
                except AggregateNotFoundError:
                    self._loaded(aggregate_id, None)

    def _take_cached(self, aggregate_id: UUID) -> bool:
        """Takes the aggregate from the cache into this unit, if the cache has it."""
        cached = self._cache.take(aggregate_id) if self._cache is not None else None
        if cached is None:
            return False
        self._from_cache.add(aggregate_id)
        self._aggregates[aggregate_id] = cached
        self._loaded_versions[aggregate_id] = cached.version
        return True

    def _loaded(self, aggregate_id: UUID, aggregate: Any) -> None:
        if aggregate is None:
            self._missing.add(aggregate_id)
            return
        self._aggregates[aggregate_id] = aggregate
        self._loaded_versions[aggregate_id] = aggregate.version

    def add(self, aggregate: A) -> A:
        self._missing.discard(cast(Any, aggregate).id)
        self._aggregates[cast(Any, aggregate).id] = aggregate
        return aggregate

    def preload_dispatches(self, dispatch_ids: list[str]) -> None:
        self.preload([dispatch_aggregate_id(d) for d in dispatch_ids], Dispatch)

    def preload_mailboxes(self, thread_ids: list[str]) -> None:
        self.preload([mailbox_aggregate_id(t) for t in thread_ids], ThreadMailbox)

    def preload_runs(self, run_ids: list[str]) -> None:
        self.preload([run_aggregate_id(r) for r in run_ids], Run)

    def preload_candidates(self, threads: list[ReadyThread], runs: bool) -> None:
        """A claim's candidates in one read: their mailboxes, their head dispatches and (``runs``) the
        heads' runs. Forget what the claim does not take with ``unread_spares``. A store that reads one
        aggregate at a time (SQLite, memory) reads only the mailboxes here: the rest when the claim takes it."""
        mailboxes = [mailbox_aggregate_id(t.thread_id) for t in threads]
        if self._read_many is None:
            self.preload(mailboxes, ThreadMailbox)
            return
        groups: list[tuple[list[UUID], type[Any]]] = [
            (mailboxes, ThreadMailbox),
            ([dispatch_aggregate_id(t.dispatch_id) for t in threads], Dispatch),
        ]
        if runs:
            groups.append(([run_aggregate_id(t.run_id) for t in threads if t.run_id is not None], Run))
        self.preload_kinds(groups)

    def unread_spares(self, threads: list[ReadyThread], taken: set[str]) -> None:
        """Forgets the head dispatches (and their runs) ``preload_candidates`` read that the claim did not
        take, so that its commit does not depend on them."""
        for thread in threads:
            if thread.dispatch_id in taken:
                continue
            ids = [dispatch_aggregate_id(thread.dispatch_id)]
            if thread.run_id is not None:
                ids.append(run_aggregate_id(thread.run_id))
            for aggregate_id in ids:
                if (aggregate := self._aggregates.get(aggregate_id)) is not None:
                    self.unread(aggregate)

    def find_dispatch(self, dispatch_id: str) -> Dispatch | None:
        return self._find(dispatch_aggregate_id(dispatch_id), Dispatch)

    def dispatch(self, dispatch_id: str) -> Dispatch:
        found = self.find_dispatch(dispatch_id)
        if found is None:
            raise DispatchNotFound(dispatch_id)
        return found

    def find_run(self, run_id: str) -> Run | None:
        return self._find(run_aggregate_id(run_id), Run)

    def run(self, run_id: str) -> Run:
        found = self.find_run(run_id)
        if found is None:
            raise RunNotFound(run_id)
        return found

    def find_mailbox(self, thread_id: str) -> ThreadMailbox | None:
        return self._find(mailbox_aggregate_id(thread_id), ThreadMailbox)

    def mailbox(self, thread_id: str) -> ThreadMailbox:
        """The thread's mailbox, opened (as a pending creation) if it has none yet."""
        found = self.find_mailbox(thread_id)
        if found is None:
            found = self.add(ThreadMailbox.open_for(thread_id=thread_id, now=self.now))
        return found

    def presume_new_mailbox(self, thread_id: str) -> None:
        """Takes the thread's mailbox to be new, unless this unit or the cache already has it: no read.
        When the guess is wrong, the mailbox's creation conflicts with its stored events (their key) and
        the next attempt reads it; a refusal resting on the guess is retried as one on a stale read.
        A service without a cache remembers no thread, so it would guess wrong on every thread's
        second run: it reads instead."""
        aggregate_id = mailbox_aggregate_id(thread_id)
        if self._cache is None or self._cache.size <= 0:
            return
        if aggregate_id in self._aggregates or aggregate_id in self._missing or self._take_cached(aggregate_id):
            return
        self._missing.add(aggregate_id)
        self._presumed.add(aggregate_id)

    def presumed_new(self) -> list[UUID]:
        """The aggregates this unit creates on the presumption that they did not exist (not read)."""
        return [i for i in self._presumed if i in self._aggregates and self._aggregates[i].pending_events]

    def find_thread_log(self, thread_id: str) -> ThreadLog | None:
        return self._find(thread_log_id(thread_id), ThreadLog)

    def thread_log(self, thread_id: str) -> ThreadLog:
        found = self.find_thread_log(thread_id)
        if found is None:
            found = self.add(ThreadLog.open_for(thread_id=thread_id, now=self.now))
        return found

    def find_message(self, thread_id: str, message_id: str) -> ThreadMessage | None:
        return self._find(message_aggregate_id(thread_id, message_id), ThreadMessage)

    def last_event(self, aggregate_id: UUID) -> Any:
        """The aggregate's latest stored event, read from the store (None when it has none): for an
        aggregate that no longer changes (a dead letter), whose last event says what its record does not."""
        return next(iter(self._unsnapshotted.event_store.get(aggregate_id, desc=True, limit=1)), None)

    def save_last(self, aggregate: Any) -> None:
        """Orders this aggregate's events after the others' in the save."""
        self._aggregates[aggregate.id] = self._aggregates.pop(aggregate.id)

    def read_is_stale(self) -> bool:
        """Whether anything this unit read has changed since (a refusal may rest on a
        mix of older and newer states read from two aggregates; the command is retried)."""
        expected = {**dict.fromkeys(self._missing, 0), **self._loaded_versions}
        if not expected:
            return False
        current = self.tables.current_versions(list(expected))
        return any(current[i] != v for i, v in expected.items())

    def unread(self, aggregate: Any) -> None:
        """Forgets an aggregate this unit read but does not act on (a claim's passed-over candidate):
        its commit then does not depend on it staying as it was."""
        if not aggregate.pending_events:
            self._aggregates.pop(aggregate.id, None)
            self._loaded_versions.pop(aggregate.id, None)
            self._from_cache.discard(aggregate.id)

    def cached_reads(self) -> dict[UUID, int]:
        """The versions of the aggregates taken from the cache and left unchanged: the commit checks
        they are still current (the ones it changes are checked by their new versions)."""
        return {i: self._loaded_versions[i] for i in self._from_cache if not self._aggregates[i].pending_events}

    def touched(self) -> list[Any]:
        """Every aggregate this unit read or created."""
        return list(self._aggregates.values())

    def changed(self) -> list[Any]:
        return [a for a in self._aggregates.values() if a.pending_events]

    def changed_dispatches(self) -> list[Dispatch]:
        return [a for a in self.changed() if isinstance(a, Dispatch)]

    def changed_mailboxes(self) -> list[ThreadMailbox]:
        return [a for a in self.changed() if isinstance(a, ThreadMailbox)]

    def commit_then_raise(self, error: MailboxError) -> None:
        """Save what was changed, then refuse the command with ``error``."""
        self.error_after_save = error
