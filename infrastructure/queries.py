"""Read-side queries of the service: records (optionally at a version), per-thread listings,
counts and the canonical export."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.persistence import Mapper

from run_mailbox.domain import policies
from run_mailbox.domain.commands import DeadLetterFilter
from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.errors import DispatchNotFound, RunNotFound
from run_mailbox.domain.ids import dispatch_aggregate_id, mailbox_aggregate_id, run_aggregate_id
from run_mailbox.domain.mailbox import MailboxRecord
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.results import DeadLetterEntry
from run_mailbox.domain.run import RunRecord
from run_mailbox.domain.values import DeadLetterReason, DispatchStatus, check_id, check_int
from run_mailbox.infrastructure.dead_letters import find_dead_letters
from run_mailbox.infrastructure.persistence.rows import MailboxTables
from run_mailbox.projections.canonical import CanonicalEvent, render

EXPORT_PAGE = 1000


class MailboxQueries:
    def __init__(
        self,
        *,
        repository: Repository[UUID],
        unsnapshotted: Repository[UUID],
        recorder: Any,
        mapper: Mapper[UUID],
        clock: Any,
    ) -> None:
        self._repository = repository
        self._unsnapshotted = unsnapshotted
        self._recorder = recorder
        self._tables: MailboxTables = recorder
        self._mapper = mapper
        self._clock = clock

    def _get_record(self, aggregate_id: UUID, version: int | None, *, snapshotted: bool = True) -> Any:
        if version is not None:
            check_int("version", version, low=1, high=2**62)
        repository = self._repository if snapshotted else self._unsnapshotted
        try:
            return repository.get(aggregate_id, version=version).record
        except AggregateNotFoundError:
            return None

    def get_dispatch(self, dispatch_id: str, *, version: int | None = None) -> DispatchRecord:
        """The dispatch's record (at its ``version``, for time travel); DispatchNotFound if none."""
        check_id("dispatch_id", dispatch_id)
        record = self._get_record(dispatch_aggregate_id(dispatch_id), version, snapshotted=False)
        if record is None:
            raise DispatchNotFound(dispatch_id)
        return cast(DispatchRecord, record)

    def get_run(self, run_id: str, *, version: int | None = None) -> RunRecord:
        """The run's record (at its ``version``, for time travel); RunNotFound if none."""
        check_id("run_id", run_id)
        record = self._get_record(run_aggregate_id(run_id), version)
        if record is None:
            raise RunNotFound(run_id)
        return cast(RunRecord, record)

    def get_mailbox(self, thread_id: str, *, version: int | None = None) -> MailboxRecord | None:
        """The thread's mailbox (epoch, open dispatches), or None for a thread never used."""
        check_id("thread_id", thread_id)
        return cast(MailboxRecord | None, self._get_record(mailbox_aggregate_id(thread_id), version))

    def thread_epoch(self, thread_id: str) -> int:
        """The thread's dispatch epoch (0 for a thread never interrupted)."""
        mailbox = self.get_mailbox(thread_id)
        return 0 if mailbox is None else mailbox.epoch

    def list_dispatches(self, thread_id: str, *, status: DispatchStatus | None = None) -> list[DispatchRecord]:
        """The thread's dispatches in claim order (priority, then age)."""
        check_id("thread_id", thread_id)
        records = [self.get_dispatch(row.dispatch_id) for row in self._tables.thread_dispatches(thread_id)]
        return [r for r in records if status is None or r.status is status]

    def count_by_status(self) -> dict[str, int]:
        """Dispatches by status (every status present)."""
        counts = {s.value: 0 for s in DispatchStatus}
        counts.update(self._tables.count_by_status())
        return counts

    def queued_thread_ids(self) -> list[str]:
        """Threads with a queued dispatch."""
        return sorted({row.thread_id for row in self._tables.all_dispatches() if row.status == "queued"})

    def list_terminal_dispatches(self, *, limit: int = 100, offset: int = 0) -> list[DispatchRecord]:
        """Dispatches in a terminal status (acked, cancelled, superseded, dead-lettered), by id."""
        rows = [r for r in self._tables.all_dispatches() if DispatchStatus(r.status).is_terminal]
        return [self.get_dispatch(r.dispatch_id) for r in rows[offset : offset + limit]]

    def dead_letters(
        self,
        *,
        thread_id: str | None = None,
        agent_id: str | None = None,
        reason: DeadLetterReason | None = None,
        since: int | None = None,
        until: int | None = None,
        limit: int = 100,
        include_redriven: bool = False,
    ) -> list[DeadLetterEntry]:
        """Dead-lettered dispatches matching every filter given, oldest first, with their agent, reason
        and error: what ``redrive_many`` with the same filters would redrive (filters as there).
        ``include_redriven``: also those redriven already (``redriven_by`` names the run)."""
        matching = DeadLetterFilter(thread_id=thread_id, agent_id=agent_id, reason=reason, since=since, until=until)
        check_int("limit", limit, low=1, high=policies.MAX_BATCH_LIMIT)
        found, _ = find_dead_letters(_Records(self), matching, limit=limit, include_redriven=include_redriven)
        return found

    def ready_dispatch_ids(self, *, now: int | None = None, limit: int = 100) -> Sequence[str]:
        """Dispatches a claim could take at ``now`` (default: the clock), in claim order."""
        at = self._clock() if now is None else now
        return [row.dispatch_id for row in self._tables.ready_dispatches(at, limit)]

    def canonical_events(
        self, *, after: int = 0, limit: int = 500, upstream_only: bool = False
    ) -> list[CanonicalEvent]:
        """Canonical envelopes of the events after log position ``after``, in log order.

        ``limit`` bounds the notifications read, so a page may hold fewer envelopes than
        ``limit`` (bookkeeping events have none); continue from the last position returned
        or, when the page is empty, from ``after + limit`` until the log's end.
        """
        check_int("after", after, low=0, high=2**63 - 1)
        check_int("limit", limit, low=1, high=policies.MAX_BATCH_LIMIT)
        rendered = []
        for notification in self._recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False):
            envelope = render(cast(DomainEvent, self._mapper.to_domain_event(notification)), notification.id)
            if envelope is not None and (envelope.upstream or not upstream_only):
                rendered.append(envelope)
        return rendered

    def iter_canonical_events(self, *, after: int = 0, upstream_only: bool = False) -> Iterator[CanonicalEvent]:
        """Every canonical envelope after position ``after``, up to the log's end when called, page by page."""
        end = self._recorder.max_notification_id() or 0
        position = after
        while position < end:
            page = self.canonical_events(after=position, limit=EXPORT_PAGE, upstream_only=upstream_only)
            yield from page
            # A page holds at most EXPORT_PAGE notifications, all after ``position``: when none
            # rendered, every notification up to position + EXPORT_PAGE has been read.
            position = page[-1].position if page else position + EXPORT_PAGE


class _Records:
    """The dead letters' records as the queries read them (``dead_letters.Source``)."""

    def __init__(self, queries: MailboxQueries) -> None:
        self.tables = queries._tables
        self._queries = queries

    def dispatches(self, dispatch_ids: list[str]) -> dict[str, DispatchRecord]:
        return {d: self._queries.get_dispatch(d) for d in dispatch_ids}

    def runs(self, run_ids: list[str]) -> dict[str, RunRecord]:
        return {r: self._queries.get_run(r) for r in run_ids}

    def last_event(self, aggregate_id: UUID) -> Any:
        return next(iter(self._queries._unsnapshotted.event_store.get(aggregate_id, desc=True, limit=1)), None)
