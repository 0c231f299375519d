"""Wires the projection views to a MailboxService: stores on the service's backend, runners,
rebuild-and-swap, and verify (rebuild into scratch, diff against live, check invariants)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from eventsourcing.postgres import PostgresFactory
from eventsourcing.sqlite import SQLiteFactory

from run_mailbox.domain.model import DomainEvent
from run_mailbox.infrastructure.invariants import check_invariants
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.projections.runner import ViewRunner
from run_mailbox.projections.stores import MemoryViewStore, PostgresViewStore, SQLiteViewStore
from run_mailbox.projections.view import View, ViewStore
from run_mailbox.projections.views import ALL_VIEWS, view_by_name

Pair = tuple[int, DomainEvent]
PREFIX = "mailbox_view"
Progress = Callable[[int], None]


class DecodedSubscription:
    """The library's Postgres subscription, yielding decoded (position, event) pairs."""

    HEARTBEAT_SECONDS = 1.0

    def __init__(self, service: MailboxService, after: int) -> None:
        self._service = service
        self._subscription = service.recorder.subscribe(gt=after)
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
            yield notification.id, cast(DomainEvent, self._service.mapper.to_domain_event(notification))

    def stop(self) -> None:
        self._stopped.set()
        self._subscription.stop()


@dataclass
class ViewDiff:
    view: str
    position: int
    differences: list[str] = field(default_factory=list)


def _diff(live: dict[str, list[dict[str, Any]]], fresh: dict[str, list[dict[str, Any]]]) -> list[str]:
    problems = []
    for table in sorted(set(live) | set(fresh)):
        live_rows = {repr(sorted(r.items())) for r in live.get(table, [])}
        fresh_rows = {repr(sorted(r.items())) for r in fresh.get(table, [])}
        problems += [f"{table}: live row not in a fresh replay: {row}" for row in sorted(live_rows - fresh_rows)]
        problems += [f"{table}: fresh replay row missing from live: {row}" for row in sorted(fresh_rows - live_rows)]
    return problems


class ViewHost:
    def __init__(self, service: MailboxService, views: Sequence[View] = ALL_VIEWS, *, batch_size: int = 1000) -> None:
        self.service = service
        self.batch_size = batch_size
        self.stores: dict[str, ViewStore] = {view.name: self._store_for(view) for view in views}

    def _store_for(self, view: View) -> ViewStore:
        factory = self.service.factory
        if isinstance(factory, PostgresFactory):
            datastore = cast(Any, self.service.recorder).datastore
            return PostgresViewStore(view, datastore.pool, schema=datastore.schema, prefix=PREFIX)
        if isinstance(factory, SQLiteFactory):
            events_file = Path(self.service.env.get("SQLITE_DBNAME") or "mailbox.db")
            # Views live beside the log, not in it: a view batch must not block event writes.
            return SQLiteViewStore(view, events_file.with_name(events_file.name + ".views"), prefix=PREFIX)
        return MemoryViewStore(view)

    def store(self, name: str) -> ViewStore:
        view_by_name(name)  # a clear KeyError for an unknown view
        return self.stores[name]

    def read_page(self, after: int, limit: int) -> list[Pair]:
        notifications = self.service.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)
        return [(n.id, cast(DomainEvent, self.service.mapper.to_domain_event(n))) for n in notifications]

    def runner(self, name: str) -> ViewRunner:
        return ViewRunner(self.store(name), self.read_page, self.batch_size)

    def log_end(self) -> int:
        return self.service.recorder.max_notification_id() or 0

    def catch_up(self) -> dict[str, int]:
        return {name: self.runner(name).catch_up() for name in self.stores}

    def wait_until(self, position: int, timeout: float = 10.0) -> None:
        for name in self.stores:
            self.runner(name).wait_until(position, timeout)

    def follow(self, stop: threading.Event) -> list[threading.Thread]:
        """One thread per view: catch up, then follow live (LISTEN/NOTIFY on Postgres, polling elsewhere)."""
        live = isinstance(self.service.factory, PostgresFactory)
        threads = []
        for name in self.stores:
            subscribe = (lambda after: DecodedSubscription(self.service, after)) if live else None
            thread = threading.Thread(
                target=self.runner(name).follow, args=(subscribe, stop), name=f"view-{name}", daemon=True
            )
            thread.start()
            threads.append(thread)
        return threads

    def rebuild(self, name: str, progress: Progress | None = None) -> tuple[int, float]:
        """Rebuilds one view into fresh tables and swaps them in; returns (events applied, seconds)."""
        store = self.store(name)
        started = time.perf_counter()
        applied = 0
        for _ in range(5):
            scratch = store.begin_rebuild()
            applied = self._fill(scratch, progress)
            try:
                store.swap_in(scratch)
                break
            except RuntimeError:  # RebuildBehind: the live view moved on meanwhile; go again
                continue
        return applied, time.perf_counter() - started

    def _fill(self, scratch: ViewStore, progress: Progress | None, stop_at: int | None = None) -> int:
        applied, after = 0, 0
        while True:
            page = self.read_page(after, self.batch_size)
            if stop_at is not None:
                page = [pair for pair in page if pair[0] <= stop_at]
            if not page:
                return applied
            applied += scratch.apply(page)
            after = page[-1][0]
            if progress is not None:
                progress(after)

    def verify(self) -> tuple[list[ViewDiff], list[str]]:
        """Rebuilds every view into scratch tables and diffs them with the live ones (at the
        same position), then checks every aggregate invariant over the whole store."""
        diffs = []
        for name, store in self.stores.items():
            self.runner(name).catch_up()
            position = store.position()
            scratch = store.begin_rebuild()
            try:
                self._fill(scratch, None, stop_at=position)
                diffs.append(ViewDiff(name, position, _diff(store.snapshot(), scratch.snapshot())))
            finally:
                scratch.drop()
        return diffs, check_invariants(self.service)

    def close(self) -> None:
        for store in self.stores.values():
            close = getattr(store, "close", None)
            if close is not None:
                close()
