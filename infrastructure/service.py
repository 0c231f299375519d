"""MailboxService: the eventsourcing Application every host embeds.

Each command is a method named after its model (``submit`` runs ``Submit``, ...): the method takes
exactly the model's arguments, builds it (a bad argument raises InvalidArgument naming it) and runs
it in one transaction through the :class:`CommandRunner`. Queries read records, the dispatch index
and the log. Persistence is chosen from the environment, as the eventsourcing library does it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, cast
from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent, Repository
from eventsourcing.persistence import EventStore
from eventsourcing.popo import POPOFactory
from eventsourcing.postgres import PostgresAggregateRecorder
from eventsourcing.utils import Environment, get_topic

from run_mailbox.domain import commands as c
from run_mailbox.domain.ids import new_id
from run_mailbox.domain.limits import Limits
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.model import Snapshot
from run_mailbox.domain.results import RepairReport
from run_mailbox.domain.run import Run
from run_mailbox.domain.thread_log import ThreadLog
from run_mailbox.infrastructure.aggregate_cache import DEFAULT_SIZE, AggregateCache
from run_mailbox.infrastructure.command_runner import MAX_CONFLICT_RETRIES, Clock, CommandRunner
from run_mailbox.infrastructure.delegates import command, delegate
from run_mailbox.infrastructure.persistence.mapper import PydanticMapper
from run_mailbox.infrastructure.persistence.memory import MemoryMailboxRecorder
from run_mailbox.infrastructure.persistence.pg_preflight import preflight
from run_mailbox.infrastructure.persistence.pg_snapshots import PostgresSnapshotRecorder
from run_mailbox.infrastructure.persistence.postgres import PostgresMailboxRecorder
from run_mailbox.infrastructure.persistence.rows import MailboxTables
from run_mailbox.infrastructure.queries import MailboxQueries
from run_mailbox.infrastructure.repair import rebuild_dispatch_index, repair_checkpoints
from run_mailbox.infrastructure.settings import (
    POSTGRES,
    heads_vacuum_every,
    limits_from_env,
    resolve_env,
    store_timeouts,
)

R = TypeVar("R")
CLOSE_WAIT_S = 5.0


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class MailboxService(Application[UUID]):
    """The run mailbox. ``env`` chooses the persistence (see ``run_mailbox.infrastructure.settings``;
    in memory by default), ``clock`` returns the time in milliseconds (for tests and replays),
    ``id_factory`` makes the ids the mailbox generates (UUIDv7 strings by default), ``cache_size``
    bounds the aggregates kept in memory between commands (0: none), and ``limits`` bounds what a
    command may carry (default: the ``MAILBOX_MAX_*`` variables of ``env`` and the environment,
    else :class:`Limits`' defaults; see docs/reliability.md)."""

    name = "MailboxService"
    env: ClassVar[dict[str, str]] = {"MAPPER_TOPIC": get_topic(PydanticMapper)}
    snapshotting_intervals: ClassVar[dict[type[Any], int]] = {ThreadMailbox: 50, Run: 50, ThreadLog: 50}
    snapshot_class = Snapshot

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        *,
        max_conflict_retries: int = MAX_CONFLICT_RETRIES,
        id_factory: Callable[[], str] = new_id,
        cache_size: int = DEFAULT_SIZE,
        limits: Limits | None = None,
    ) -> None:
        resolved = resolve_env(env)
        self.limits = limits if limits is not None else limits_from_env(resolved)
        if resolved.get("PERSISTENCE_MODULE", "").startswith(POSTGRES):
            preflight(Environment(self.name, resolved))  # fails in seconds, with the server's reason
        super().__init__(resolved)
        self.clock: Clock = clock or wall_clock_ms
        self.unsnapshotted = Repository(event_store=self.events)
        self.cache = AggregateCache(cache_size)
        self.runner = CommandRunner(
            repository=self.repository,
            unsnapshotted=self.unsnapshotted,
            tables=self.tables,
            save=self.save,
            clock=self.clock,
            new_id=id_factory,
            max_conflict_retries=max_conflict_retries,
            cache=self.cache,
            mapper=self.mapper,
            limits=self.limits,
        )
        self.queries = MailboxQueries(
            repository=self.repository,
            unsnapshotted=self.unsnapshotted,
            recorder=self.recorder,
            mapper=self.mapper,
            clock=self.clock,
        )

    def construct_recorder(self) -> Any:
        if isinstance(self.factory, POPOFactory):
            return MemoryMailboxRecorder()
        recorder = super().construct_recorder()
        if isinstance(recorder, PostgresMailboxRecorder):
            recorder.configure(store_timeouts(self.env))
            recorder.heads_vacuum.every = heads_vacuum_every(self.env)
        return recorder

    def construct_snapshot_store(self) -> EventStore[UUID]:
        store = super().construct_snapshot_store()
        if type(store.recorder) is PostgresAggregateRecorder:
            store.recorder = PostgresSnapshotRecorder.adopt(store.recorder)
        return store

    def save(self, *aggregates: Any, **kwargs: Any) -> Any:
        """The library's ``save`` for our aggregates only: it collects their events without the
        library's runtime-protocol ``isinstance`` checks (about a tenth of a worker's CPU), then
        records, snapshots and notifies as the library does."""
        processing = ProcessingEvent[UUID]()
        for aggregate in aggregates:
            processing.events.extend(aggregate.collect_events())
            processing.aggregates[aggregate.id] = aggregate
        processing.saved_kwargs.update(kwargs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        self.notify(processing.events)  # the library's deprecated hook, kept for parity
        return recordings

    @property
    def tables(self) -> MailboxTables:
        """The recorder's side tables: the idempotency keys and the dispatch index."""
        return cast(MailboxTables, self.recorder)

    @property
    def transactions(self) -> int:
        """Transactions this instance committed (for benchmarks and tests)."""
        return self.runner.transactions

    def execute(self, cmd: c.Command[R]) -> R:
        """Runs one command in one transaction and returns its result."""
        return self.runner.run(cmd)

    def close(self) -> None:
        """Closes the store's connections, after a vacuum of the ready heads under way (up to 5 s)."""
        if isinstance(self.recorder, PostgresMailboxRecorder):
            self.recorder.heads_vacuum.wait(CLOSE_WAIT_S)
        super().close()

    # ------------------------------------------------------------------ commands

    submit = command(c.Submit)
    submit_many = command(c.SubmitMany)
    cancel = command(c.Cancel)
    interrupt = command(c.Interrupt)
    claim = command(c.Claim)
    claim_dispatch = command(c.ClaimDispatch)
    claim_next = command(c.ClaimNext)
    extend_lease = command(c.ExtendLease)
    reclaim_expired_leases = command(c.ReclaimExpiredLeases)
    record_start = command(c.RecordStart)
    ack = command(c.Ack)
    ack_many = command(c.AckMany)
    nack = command(c.Nack)
    dead_letter = command(c.DeadLetter)
    suspend = command(c.Suspend)
    decide = command(c.Decide)
    finish_run = command(c.FinishRun)
    commit_messages = command(c.CommitMessages)
    redrive = command(c.Redrive)
    redrive_many = command(c.RedriveMany)

    def repair_checkpoints(self) -> RepairReport:
        """Re-derives from the log the checkpoint ranges a host must have seen, and records any
        that is missing (none is, when every commit went through ``commit_messages``)."""
        return repair_checkpoints(self.recorder, self.mapper, self.execute)

    def rebuild_dispatch_index(self) -> int:
        """Rewrites the dispatch index from the log (for a log restored without its side tables);
        returns how many dispatches it indexed."""
        return rebuild_dispatch_index(self.recorder, self.mapper, self.unsnapshotted, self.tables)

    # ------------------------------------------------------------------ queries

    get_dispatch = delegate("queries", MailboxQueries.get_dispatch)
    get_run = delegate("queries", MailboxQueries.get_run)
    get_mailbox = delegate("queries", MailboxQueries.get_mailbox)
    thread_epoch = delegate("queries", MailboxQueries.thread_epoch)
    list_dispatches = delegate("queries", MailboxQueries.list_dispatches)
    count_by_status = delegate("queries", MailboxQueries.count_by_status)
    queued_thread_ids = delegate("queries", MailboxQueries.queued_thread_ids)
    list_terminal_dispatches = delegate("queries", MailboxQueries.list_terminal_dispatches)
    dead_letters = delegate("queries", MailboxQueries.dead_letters)
    ready_dispatch_ids = delegate("queries", MailboxQueries.ready_dispatch_ids)
    canonical_events = delegate("queries", MailboxQueries.canonical_events)
    iter_canonical_events = delegate("queries", MailboxQueries.iter_canonical_events)
