"""Subclasses of the mailbox machine that check the replay properties at every step or at the end.

- ``RebuildMachine``: every view is built incrementally, one batch per command as it is written;
  at the end a fresh store rebuilt from position 0 must equal it.
- ``RedeliveryMachine``: every batch reaches a second set of views with every event twice, and
  again together with the previous batch, both through the store and straight to the handlers;
  the handlers then get the previous batch once more, alone, after the newer events.
- ``ReissueMachine``: every command carries an idempotency key and is re-issued at once (same
  arguments: the original result and no write; one argument changed: IdempotencyConflict).
- ``TimeTravelMachine``: every aggregate's record after each command, by version, must be what
  a read at that version gives at the end; every aggregate folded from its events equals the
  live one (snapshots every 3 events, so the snapshot path is exercised).
- ``CanonicalMachine``: the canonical export is the same bytes on every read, through a second
  service on the same SQLite file, and from the canonical_feed view.
"""

from __future__ import annotations

import functools
import tempfile
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar
from uuid import UUID

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.ids import dispatch_aggregate_id, run_aggregate_id
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.run import Run
from run_mailbox.domain.thread_log import ThreadLog
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.views.pages import LogPages
from run_mailbox.projections import canonical_feed, runner
from run_mailbox.projections.runner import ViewRunner
from run_mailbox.projections.schema import copy_row, matches, sort_rows
from run_mailbox.projections.stores.memory import MemoryViewStore
from run_mailbox.projections.stores.sqlite import SQLiteViewStore
from run_mailbox.projections.view import BufferedTx, View, tables_of
from run_mailbox.projections.views import ALL_VIEWS
from tests.properties import _backends, _canonical_oracle, _query_oracle, _view_oracle
from tests.properties._calls import digested, perturbed
from tests.properties._oracle import conflict, returns
from tests.properties._vocabulary import Refused
from tests.properties.mailbox_machine import MailboxMachine

Pair = tuple[int, DomainEvent]


def log_reader(service: Any) -> Any:
    def read_page(after: int, limit: int) -> list[Pair]:
        notifications = service.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)
        return [(n.id, service.mapper.to_domain_event(n)) for n in notifications]

    return read_page


def rebuilt(view: View, service: Any, batch_size: int) -> MemoryViewStore:
    """The view rebuilt from position 0 through the host's page reader: only the kinds it handles decoded
    and handed to it, the next page fetched ahead (the incremental views are handed every event)."""
    store = MemoryViewStore(view)
    ViewRunner(store, LogPages(service), batch_size=batch_size, read_ahead=True).catch_up()
    return store


class HandlerStore:
    """Rows of one view fed straight through its handler, with no position tracking: an event
    delivered again reaches the handler again (the view must be idempotent on its own)."""

    def __init__(self, view: View) -> None:
        self.view = view
        self.tables = tables_of(view)
        self.rows: dict[str, dict[Any, dict[str, Any]]] = {name: {} for name in self.tables}

    def deliver(self, batch: Sequence[Pair]) -> None:
        tx = BufferedTx(
            self.tables,
            lambda t, key: self.rows[t.name].get(key),
            lambda t, where: [r for r in self.rows[t.name].values() if matches(r, where)],
        )
        for position, event in batch:
            self.view.handle(position, event, tx)
        for name, rows in self.rows.items():
            upserts, deletes = tx.writes(name)
            for key in deletes:
                rows.pop(key, None)
            for row in upserts:
                rows[self.tables[name].key_of(row)] = row

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        return {name: [copy_row(r) for r in sort_rows(t, self.rows[name].values())] for name, t in self.tables.items()}


class RebuildMachine(MailboxMachine):
    """Views built batch by batch, compared after every command with the rows the reference
    model computes (``_view_oracle``), and at the end with the views rebuilt from position 0."""

    def __init__(self) -> None:
        super().__init__()
        self.views = {view.name: MemoryViewStore(view) for view in ALL_VIEWS}
        self.tool_names: dict[tuple[str, str], str] = {}

    def after_command(self, command: str, kwargs: dict[str, Any], outcome: Any, key: str | None) -> None:
        if command == "suspend" and not isinstance(outcome, Refused):
            run_id = self.model.dispatches[kwargs["dispatch_id"]].run_id
            self.tool_names.update({(run_id, t["tool_call_id"]): t["tool_name"] for t in kwargs["tickets"]})
        if self.observed.events:
            for store in self.views.values():
                store.apply(self.observed.events)
        self.expected = _view_oracle.expected_views(self.model, self.tool_names)
        for name, rows in self.expected.items():
            _view_oracle.compare(name, _view_oracle.actual_rows(self.views[name]), rows)

    def at_end(self) -> None:
        super().at_end()
        _canonical_oracle.check_export(self.model, canonical_feed.feed(self.views["canonical_feed"], limit=10**6))
        _query_oracle.check_queries(self.model, self.views, self.expected, self.clock.now)
        _query_oracle.check_feed(self.views["canonical_feed"])
        read_page = log_reader(self.service)
        log = read_page(0, 10**6)
        self.rebuilt_on_sqlite(read_page)
        for name, incremental in self.views.items():
            replayed = rebuilt(incremental.view, self.service, batch_size=7)
            assert replayed.position() == incremental.position() == self.model.position
            assert replayed.snapshot() == incremental.snapshot(), f"view {name}: replayed from 0 differs"
            # the rebuild that swaps scratch tables in, over a live store that holds the first half
            swapped = MemoryViewStore(incremental.view)
            swapped.apply(log[: len(log) // 2])
            assert runner.rebuild(swapped, read_page, batch_size=5) == self.model.position
            assert swapped.snapshot() == incremental.snapshot(), f"view {name}: rebuilt and swapped in differs"
            # a runner following a subscription (which ends) from where its first catch-up stopped
            followed = MemoryViewStore(incremental.view)
            follower = ViewRunner(followed, lambda after, limit: [], follow_batch_size=4, poll_interval=0.01)
            follower.follow(lambda after: iter([p for p in log if p[0] > after]), threading.Event())
            assert followed.snapshot() == incremental.snapshot(), f"view {name}: followed differs"
            polled, stopped = MemoryViewStore(incremental.view), threading.Event()
            stopped.set()  # polling: the first catch-up, then the loop sees the stop and returns
            ViewRunner(polled, read_page, batch_size=7, poll_interval=0.01).follow(None, stopped)
            assert polled.snapshot() == incremental.snapshot(), f"view {name}: polled differs"

    def rebuilt_on_sqlite(self, read_page: Any) -> None:
        """Every view also built on a SQLite store (batched reads through each view's prefetch),
        batch by batch, each batch twice: the same rows as the memory store's."""
        with tempfile.TemporaryDirectory(prefix="mailbox-views-") as folder:
            for name, incremental in self.views.items():
                store = SQLiteViewStore(incremental.view, Path(folder) / "views.db", prefix=name)
                try:
                    for start in range(0, self.model.position, 7):
                        page = read_page(start, 7)
                        store.apply(page + page)
                    got, want = _view_oracle.actual_rows(store), _view_oracle.actual_rows(incremental)
                    assert got == want, f"view {name}: built on SQLite differs from memory"
                finally:
                    store.close()


class RedeliveryMachine(MailboxMachine):
    def __init__(self) -> None:
        super().__init__()
        self.once = {view.name: MemoryViewStore(view) for view in ALL_VIEWS}
        self.twice = {view.name: MemoryViewStore(view) for view in ALL_VIEWS}
        self.handlers = {view.name: HandlerStore(view) for view in ALL_VIEWS}
        self.previous: list[Pair] = []

    def after_command(self, command: str, kwargs: dict[str, Any], outcome: Any, key: str | None) -> None:
        batch = self.observed.events
        if not batch:
            return
        doubled = [pair for event in batch for pair in (event, event)]
        for name in self.once:
            self.once[name].apply(batch)
            self.twice[name].apply(doubled)
            self.twice[name].apply(self.previous + batch)
            self.handlers[name].deliver(doubled)
            self.handlers[name].deliver(self.previous + batch)
            self.handlers[name].deliver(self.previous)  # an older batch again, after newer events
            expected = self.once[name].snapshot()
            assert self.twice[name].snapshot() == expected, f"view {name}: a store delivered batches twice differs"
            assert self.handlers[name].snapshot() == expected, f"view {name}: events handled twice change its rows"
        self.previous = batch


class ReissueMachine(MailboxMachine):
    def wants_key(self, keyed: bool) -> bool:
        return True

    def after_command(self, command: str, kwargs: dict[str, Any], outcome: Any, key: str | None) -> None:
        if key is None or isinstance(outcome, Refused):
            return  # a re-issue itself, or a refusal (which records no key)
        entry, observed = self.model.keyed[-1], self.observed
        assert entry.key == key
        row = self.service.tables.find_idempotency(key)
        assert row is not None and row.command == command, f"key {key} recorded as {row}, not {command}"
        assert len(row.digest) == 64 and int(row.digest, 16) >= 0, row
        self.execute(command, {**kwargs, "idempotency_key": key}, expect=returns(outcome, "the key's first result"))
        for pick, name in enumerate(digested(entry)):
            changed = {**perturbed(entry, pick), "idempotency_key": key}
            self.execute(command, changed, expect=conflict(f"{name} changed"))
        self.observed = observed

    def at_end(self) -> None:
        super().at_end()
        for entry in self.model.keyed:  # later, in another state: still the first result
            call = {**entry.kwargs, "idempotency_key": entry.key}
            self.execute(entry.command, call, expect=returns(entry.result, "the key's first result"))


class SnapshottingService(MailboxService):
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {ThreadMailbox: 3, Run: 3, ThreadLog: 3, Dispatch: 3}


class TimeTravelMachine(MailboxMachine):
    service_class = SnapshottingService

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[UUID, list[tuple[int, Any]]] = defaultdict(list)
        self.names: dict[UUID, tuple[str, str]] = {}

    def read(self, aggregate_id: UUID, version: int | None = None) -> Any:
        """The record through the public query when there is one (dispatches, runs)."""
        kind, ident = self.names.get(aggregate_id, ("other", ""))
        if kind == "dispatch":
            return self.service.get_dispatch(ident, version=version)
        if kind == "run":
            return self.service.get_run(ident, version=version)
        return self.service.repository.get(aggregate_id, version=version).record

    def after_command(self, command: str, kwargs: dict[str, Any], outcome: Any, key: str | None) -> None:
        self.names.update({dispatch_aggregate_id(d): ("dispatch", d) for d in self.observed.dispatches})
        self.names.update({run_aggregate_id(r): ("run", r) for r in self.observed.runs})
        for aggregate_id, version in self.observed.versions.items():
            self.history[aggregate_id].append((version, self.read(aggregate_id)))

    def at_end(self) -> None:
        super().at_end()
        for aggregate_id, states in self.history.items():
            for version, record in states:
                then = self.read(aggregate_id, version)
                assert then == record, f"{self.names.get(aggregate_id, aggregate_id)} at version {version}: {then}"
            events: list[Any] = list(self.service.events.get(aggregate_id))
            folded = functools.reduce(lambda a, e: e.mutate(a), events, None)
            live: Any = self.service.repository.get(aggregate_id)
            assert folded is not None and folded.version == live.version, aggregate_id
            assert folded.record == live.record, f"{aggregate_id}: folded from its events differs from the live one"


class CanonicalMachine(MailboxMachine):
    backend = staticmethod(_backends.sqlite)

    def export(self, service: Any) -> list[str]:
        return [e.to_json_line() for e in service.canonical_events(limit=10_000)]

    def at_end(self) -> None:
        super().at_end()
        assert self.model.position < 10_000, "the export below reads at most 10,000 entries"
        first = self.export(self.service)
        assert self.export(self.service) == first, "a second export differs"
        again = MailboxService(env=self.service.env, clock=self.clock)
        try:
            assert self.export(again) == first, "another service on the same file exports other bytes"
            _canonical_oracle.check_export(self.model, list(self.service.canonical_events(limit=10_000)))
        finally:
            again.close()
        store = rebuilt(canonical_feed.VIEW, self.service, batch_size=50)
        assert [e.to_json_line() for e in canonical_feed.feed(store, limit=10**6)] == first
