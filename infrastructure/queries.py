"""Read-side queries of the service: records, per-thread listings, counts, canonical export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain import policies
from domain.dispatch import DispatchRecord
from domain.errors import DispatchNotFound, RunNotFound
from domain.ids import dispatch_aggregate_id, mailbox_aggregate_id, run_aggregate_id
from domain.mailbox import MailboxRecord
from domain.model import DomainEvent
from domain.run import RunRecord
from domain.values import DispatchStatus, check_id, check_int
from infrastructure.command_base import CommandBase
from projections.canonical import CanonicalEvent, render


class MailboxQueries(CommandBase):
    def _get_record(self, aggregate_id: UUID, version: int | None = None, *, snapshotted: bool = True) -> Any:
        repository = self.repository if snapshotted else self.unsnapshotted
        try:
            return repository.get(aggregate_id, version=version).record
        except AggregateNotFoundError:
            return None

    def get_dispatch(self, dispatch_id: str, *, version: int | None = None) -> DispatchRecord:
        check_id("dispatch_id", dispatch_id)
        record = self._get_record(dispatch_aggregate_id(dispatch_id), version, snapshotted=False)
        if record is None:
            raise DispatchNotFound(dispatch_id)
        return record  # type: ignore[no-any-return]

    def get_run(self, run_id: str, *, version: int | None = None) -> RunRecord:
        check_id("run_id", run_id)
        record = self._get_record(run_aggregate_id(run_id), version)
        if record is None:
            raise RunNotFound(run_id)
        return record  # type: ignore[no-any-return]

    def get_mailbox(self, thread_id: str, *, version: int | None = None) -> MailboxRecord | None:
        check_id("thread_id", thread_id)
        return self._get_record(mailbox_aggregate_id(thread_id), version)  # type: ignore[no-any-return]

    def thread_epoch(self, thread_id: str) -> int:
        mailbox = self.get_mailbox(thread_id)
        return 0 if mailbox is None else mailbox.epoch

    def list_dispatches(self, thread_id: str, *, status: DispatchStatus | None = None) -> list[DispatchRecord]:
        """The thread's dispatches in claim order (priority, then age)."""
        check_id("thread_id", thread_id)
        records = [self.get_dispatch(row.dispatch_id) for row in self.tables.thread_dispatches(thread_id)]
        return [r for r in records if status is None or r.status is status]

    def count_by_status(self) -> dict[str, int]:
        counts = {s.value: 0 for s in DispatchStatus}
        counts.update(self.tables.count_by_status())
        return counts

    def queued_thread_ids(self) -> list[str]:
        return sorted({row.thread_id for row in self.tables.all_dispatches() if row.status == "queued"})

    def list_terminal_dispatches(self, *, limit: int = 100, offset: int = 0) -> list[DispatchRecord]:
        rows = [r for r in self.tables.all_dispatches() if DispatchStatus(r.status).is_terminal]
        return [self.get_dispatch(r.dispatch_id) for r in rows[offset : offset + limit]]

    def ready_dispatch_ids(self, *, now: int | None = None, limit: int = 100) -> Sequence[str]:
        return [row.dispatch_id for row in self.tables.ready_dispatches(self._now(now), limit)]

    # ================================================================== canonical export

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
        for notification in self.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False):
            envelope = render(cast(DomainEvent, self.mapper.to_domain_event(notification)), notification.id)
            if envelope is not None and (envelope.upstream or not upstream_only):
                rendered.append(envelope)
        return rendered
