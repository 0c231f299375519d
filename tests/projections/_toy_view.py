"""A small view over real dispatch events, a workload that records a few hundred of them, and log readers.

``ToyView`` keeps, per thread, how many dispatch events it saw (an absolute count guarded by
the last position it applied, so re-applying an event changes nothing), which dispatches
are open, and per dispatch its last status: every column type and every ``ViewTx`` method.

One table is deliberately not idempotent: ``toy_deliveries`` counts every call of ``handle``
per thread, so a store that applied a position twice shows it in its snapshot.
``buggy = True`` makes the handler write wrong rows (a view with a bug a rebuild fixes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.model import DomainEvent
from run_mailbox.infrastructure.views.pages import LogPages
from run_mailbox.projections.runner import ViewRunner
from run_mailbox.projections.schema import Column, Table
from run_mailbox.projections.stores import MemoryViewStore, PostgresViewStore, SQLiteViewStore
from run_mailbox.projections.view import ViewStore, ViewTx

THREADS = "toy_threads"
DISPATCHES = "toy_dispatches"
OPEN = "toy_open"
DELIVERIES = "toy_deliveries"


class ToyView:
    name = "toy"
    buggy = False
    tables = (
        Table(
            THREADS,
            (
                Column("thread_id", "text", nullable=False),
                Column("events", "int", nullable=False),
                Column("last_position", "int", nullable=False),
                Column("open_count", "int", nullable=False),
                Column("has_open", "bool", nullable=False),
                Column("kinds", "json", nullable=False),
            ),
            key=("thread_id",),
        ),
        Table(
            DISPATCHES,
            (
                Column("dispatch_id", "text", nullable=False),
                Column("thread_id", "text", nullable=False),
                Column("status", "text", nullable=False),
                Column("attempt_count", "int", nullable=False),
                Column("terminal", "bool", nullable=False),
                Column("last_error", "text"),
                Column("lease_until", "int"),
                Column("position", "int", nullable=False),
                Column("detail", "json"),
            ),
            key=("dispatch_id",),
            indexes=(("thread_id", "status"), ("lease_until",)),
        ),
        Table(
            OPEN,
            (Column("thread_id", "text", nullable=False), Column("dispatch_id", "text", nullable=False)),
            key=("thread_id", "dispatch_id"),
        ),
        Table(
            DELIVERIES,
            (Column("thread_id", "text", nullable=False), Column("handled", "int", nullable=False)),
            key=("thread_id",),
        ),
    )

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None:
        if not isinstance(event, Dispatch.Event):
            return
        record = event.dispatch
        delivered = tx.get(DELIVERIES, (record.thread_id,))
        handled = 1 + (delivered["handled"] if delivered else 0)
        tx.upsert(DELIVERIES, {"thread_id": record.thread_id, "handled": handled})
        thread = tx.get(THREADS, (record.thread_id,)) or {
            "thread_id": record.thread_id,
            "events": 0,
            "last_position": 0,
            "kinds": {},
        }
        if position <= thread["last_position"]:
            return
        tx.upsert(
            DISPATCHES,
            {
                "dispatch_id": record.dispatch_id,
                "thread_id": record.thread_id,
                "status": "BOGUS" if self.buggy else record.status,
                "attempt_count": record.attempt_count,
                "terminal": record.is_terminal,
                "last_error": record.last_error,
                "lease_until": record.lease_until,
                "position": position,
                "detail": {"epoch": record.dispatch_epoch, "claimed_by": record.claimed_by, "kind": event.kind()},
            },
        )
        if self.buggy:
            tx.upsert(OPEN, {"thread_id": record.thread_id, "dispatch_id": "ghost"})
        if record.is_terminal:
            tx.delete(OPEN, (record.thread_id, record.dispatch_id))
        else:
            tx.upsert(OPEN, {"thread_id": record.thread_id, "dispatch_id": record.dispatch_id})
        open_count = len(tx.rows(OPEN, {"thread_id": record.thread_id}))
        kinds: dict[str, int] = thread["kinds"]
        kinds[event.kind()] = kinds.get(event.kind(), 0) + 1
        thread.update(
            events=thread["events"] + 1,
            last_position=position,
            open_count=open_count,
            has_open=open_count > 0,
            kinds=kinds,
        )
        tx.upsert(THREADS, thread)


def record_history(service: Any, clock: Any, cycles: int = 12, threads: int = 4) -> int:
    """Drives the service through submits, claims, acks, nacks, cancels and interrupts; returns the log's end."""
    tag = service.recorder.max_notification_id() or 0  # a second call records runs of its own
    for cycle in range(cycles):
        for t in range(threads):
            thread_id = f"thread-{t}"
            run_id = f"run-{tag}-{cycle}-{t}"
            queued = service.submit(thread_id, run_id, priority=(cycle + t) % 3)
            step = (cycle + t) % 5
            if step == 4:
                service.cancel(queued.dispatch_id)
                continue
            claimed = service.claim(thread_id, consumer_id=f"worker-{t}", lease_ms=1_000)
            if claimed is None:
                continue
            token = claimed.claim_token
            if step == 0:
                service.record_start(claimed.dispatch_id, claim_token=token)
                service.ack(claimed.dispatch_id, claim_token=token)
            elif step == 1:
                service.nack(claimed.dispatch_id, claim_token=token, error=f"boom {cycle}")
            elif step == 2:
                service.extend_lease(claimed.dispatch_id, claim_token=token, lease_ms=2_000)
                service.interrupt(thread_id)
            else:
                service.dead_letter(claimed.dispatch_id, claim_token=token, error="fatal")
            clock.advance(700)
        clock.advance(3_000)
        service.reclaim_expired_leases(limit=100)
    return int(service.recorder.max_notification_id() or 0)


def log_end(service: Any) -> int:
    """The log's last position."""
    return int(service.recorder.max_notification_id() or 0)


def log_reader(service: Any) -> LogPages:
    """``read_page(after, limit)`` over the service's log, decoded: what ``ViewHost`` gives its runners."""
    return LogPages(service)


class StoreFactory:
    """Makes view stores of the kind that matches the service's backend; stores on one prefix share tables.

    memory -> ``MemoryViewStore`` (one object per prefix), sqlite -> ``SQLiteViewStore`` in a file
    beside the log, postgres -> ``PostgresViewStore`` on the service's pool and schema.
    """

    def __init__(self, env: dict[str, str], service: Any, directory: Path) -> None:
        module = env.get("PERSISTENCE_MODULE", "eventsourcing.postgres")
        self.kind = module.rsplit(".", 1)[-1].replace("popo", "memory")
        self.env, self.service, self.directory = env, service, directory
        self._memory: dict[str, MemoryViewStore] = {}
        self._opened: list[Any] = []

    def __call__(self, view: Any = None, prefix: str = "view") -> ViewStore:
        view = view if view is not None else ToyView()
        if self.kind == "memory":
            return self._memory.setdefault(prefix, MemoryViewStore(view))
        store: Any
        if self.kind == "sqlite":
            store = SQLiteViewStore(view, self.directory / "views.db", prefix=prefix)
        else:
            pool = self.service.recorder.datastore.pool
            store = PostgresViewStore(view, pool, schema=self.env["POSTGRES_SCHEMA"], prefix=prefix)
        self._opened.append(store)
        return store

    def close(self) -> None:
        for store in self._opened:
            store.close()


class DecodedSubscription:
    """The library's subscription, yielding decoded (position, event) pairs; ``stop()`` ends it."""

    def __init__(self, service: Any, after: int) -> None:
        self._mapper = service.mapper
        self._subscription = service.recorder.subscribe(gt=after)
        # eventsourcing 9.5.6's in-memory subscription starts its pull thread before it registers
        # its listener, so an event recorded in between is never announced and the subscription
        # waits forever. Wake it once now that the listener is registered (our ViewHost polls
        # instead of subscribing on the in-memory and SQLite backends).
        wake = getattr(self._subscription, "_has_been_notified", None)
        if wake is not None:
            wake.set()

    def __iter__(self) -> DecodedSubscription:
        return self

    def __next__(self) -> tuple[int, DomainEvent]:
        notification = next(self._subscription)
        return notification.id, self._mapper.to_domain_event(notification)

    def stop(self) -> None:
        self._subscription.stop()


def replayed(service: Any) -> dict[str, list[dict[str, Any]]]:
    """The toy view replayed from position 0 into a fresh in-memory store."""
    store = MemoryViewStore(ToyView())
    ViewRunner(store, log_reader(service), batch_size=50).catch_up()
    return store.snapshot()
