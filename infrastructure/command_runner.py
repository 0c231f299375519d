"""Runs a command: one transaction, a bounded retry on conflicts, and idempotency keys.

An attempt opens a unit of work, the command's handler reads aggregates and calls their
methods, and ``save`` writes every pending event together with the changed dispatch-index rows
and, under a key, the command's idempotency row, in one transaction. A conflict with another
writer (the store refuses an aggregate version or the key) starts a new attempt on fresh reads,
up to ``max_conflict_retries`` times. A refusal that rests on a read made stale by a concurrent
writer is retried too, so a caller never sees a refusal the current state would not give.

Under an idempotency key, the first attempt does not look the key up: its write inserts the key's
row beside its events, so when the key is already recorded the store refuses the whole write (the
key is the idempotency table's primary key) and the next attempt, like every later one, looks the
key up first and returns the stored result. An outcome that records no key (a refusal, an error
raised after a save) looks the key up before it is given: once a duplicate of the command has
committed, every other copy returns its stored result (instead of, say, "it is acked" for a
duplicate ack that read the dispatch after it). So a keyed command costs no more round trips than
an unkeyed one; a re-issued one costs one failed write more.

With an ``AggregateCache``, an attempt takes aggregates from it instead of the store; the commit
checks the cached ones it only read (``read_versions``), and a failed attempt drops everything it
read from the cache, so the next one reads from the store (see ``aggregate_cache``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from eventsourcing.application import Repository
from eventsourcing.persistence import IntegrityError
from pydantic import TypeAdapter

from run_mailbox.domain.commands import Command
from run_mailbox.domain.errors import ConcurrencyConflict, IdempotencyConflict, InvalidArgument, MailboxError
from run_mailbox.domain.limits import DEFAULT, Limits
from run_mailbox.domain.values import MAX_MILLIS
from run_mailbox.infrastructure.aggregate_cache import AggregateCache
from run_mailbox.infrastructure.claim_reservations import ClaimReservations, ReservationHold
from run_mailbox.infrastructure.handlers import handler_for
from run_mailbox.infrastructure.observe import DEFAULT_OBSERVER, CommandObserver, Observation
from run_mailbox.infrastructure.persistence.ready_heads import head_of
from run_mailbox.infrastructure.persistence.rows import DispatchIndexRow, IdempotencyRow, MailboxTables
from run_mailbox.infrastructure.unit_of_work import GeneratedIds, UnitOfWork

R = TypeVar("R")
MAX_CONFLICT_RETRIES = 24
Clock = Callable[[], int]


class Save(Protocol):
    def __call__(self, *objs: Any, **kwargs: Any) -> Any: ...


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def result_adapter(command_class: type[Command[Any]]) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(command_class)
    if adapter is None:
        adapter = _ADAPTERS[command_class] = TypeAdapter(command_class.result_type)
    return adapter


class CommandRunner:
    def __init__(
        self,
        *,
        repository: Repository[Any],
        unsnapshotted: Repository[Any],
        tables: MailboxTables,
        save: Save,
        clock: Clock,
        new_id: Callable[[], str],
        max_conflict_retries: int = MAX_CONFLICT_RETRIES,
        cache: AggregateCache | None = None,
        observer: CommandObserver = DEFAULT_OBSERVER,
        mapper: Any = None,
        limits: Limits = DEFAULT,
    ) -> None:
        self.limits = limits
        self._repository = repository
        self._unsnapshotted = unsnapshotted
        self._tables = tables
        self._save = save
        self.clock = clock
        self._new_id = new_id
        self.max_conflict_retries = max_conflict_retries
        self.cache = cache
        self._mapper = mapper
        self.reservations = ClaimReservations()
        """The threads this service's concurrent ``claim_next`` are about to claim (``claim_reservations``)."""
        self._count_lock = threading.Lock()
        self.transactions = 0
        """Transactions committed (for benchmarks and tests)."""
        self.retries = 0
        """Attempts that ran again on fresh reads (a conflict, a stale read)."""
        self.observer = observer
        """Sees every command (structured logs; spans and metrics with ``run_mailbox.instrument``)."""

    def run(self, command: Command[R]) -> R:
        with self.observer.observe(command) as seen:
            result = seen.result = self._run(command, seen)
            return result

    def _run(self, command: Command[R], seen: Observation) -> R:
        handler = handler_for(type(command))
        adapter = result_adapter(type(command))
        self.limits.check(command.measures)
        now = command.now
        if now is None:
            now = self.clock()
            if not 0 <= now <= MAX_MILLIS:
                raise InvalidArgument("now", now, f"the service's clock must read between 0 and {MAX_MILLIS}")
            command.check_at(now)
        key = command.idempotency_key
        digest = command.digest() if key is not None else ""
        ids = GeneratedIds(self._new_id)
        for attempt in range(self.max_conflict_retries):
            seen.attempts = attempt + 1
            if key is not None and attempt > 0 and (found := self._tables.find_idempotency(key)) is not None:
                return _replay(found, command, digest, adapter, seen)
            with ReservationHold(self.reservations) as hold:  # what a claim holds, until this attempt ends
                uow = UnitOfWork(
                    self._repository,
                    now=now,
                    tables=self._tables,
                    ids=ids,
                    attempt=attempt,
                    unsnapshotted=self._unsnapshotted,
                    cache=self.cache,
                    mapper=self._mapper,
                    claims=hold,
                )
                try:
                    result: R = handler(command, uow)
                except MailboxError:
                    if attempt + 1 < self.max_conflict_retries and uow.read_is_stale():
                        self._forget(uow)
                        continue
                    # A concurrent copy of this keyed command may have committed between the key's
                    # lookup and this attempt's reads (the refusal is then its effect): replay it.
                    if key is not None and (found := self._tables.find_idempotency(key)) is not None:
                        return _replay(found, command, digest, adapter, seen)
                    raise
                except BaseException:
                    self._forget(uow)
                    raise
                # This outcome will not record the key, so the store cannot refuse a duplicate: ask it
                # (later attempts asked before they began).
                unkeyed_save = attempt == 0 and uow.error_after_save is not None
                if key is not None and unkeyed_save and (found := self._tables.find_idempotency(key)) is not None:
                    return _replay(found, command, digest, adapter, seen)
                if self._commit(uow, command, digest, adapter, result):
                    self._remember(uow)
                    if uow.error_after_save is not None:
                        raise uow.error_after_save
                    return result
                self._forget(uow)
        raise ConcurrencyConflict(command.name, self.max_conflict_retries)

    def _remember(self, uow: UnitOfWork) -> None:
        if self.cache is not None:
            for aggregate in uow.touched():
                self.cache.put(aggregate)

    def _forget(self, uow: UnitOfWork) -> None:
        """Drops what the attempt read from the cache: the next attempt reads it from the store."""
        with self._count_lock:
            self.retries += 1
        if self.cache is not None:
            self.cache.evict([a.id for a in uow.touched()])

    def _commit(
        self, uow: UnitOfWork, command: Command[Any], digest: str, adapter: TypeAdapter[Any], result: Any
    ) -> bool:
        """Saves what the attempt changed; False when another writer got there first."""
        changed = uow.changed()
        key = command.idempotency_key
        record_key = key is not None and uow.error_after_save is None  # a refusal is not a result to replay
        read_versions = uow.cached_reads()
        if not changed and not record_key:
            # Nothing to write: the result still must not rest on a stale cached read.
            current = self._tables.current_versions(list(read_versions)) if read_versions else {}
            return all(current[i] == v for i, v in read_versions.items())
        kwargs: dict[str, Any] = {
            "index_rows": [DispatchIndexRow.of(d.record) for d in uow.changed_dispatches()],
            "head_rows": {m.thread_id: head_of(m.record) for m in uow.changed_mailboxes()},
            "read_versions": read_versions,
        }
        if presumed := uow.presumed_new():
            kwargs["presumed_new"] = presumed
        if record_key:
            assert key is not None
            kwargs["idempotency"] = IdempotencyRow(key, command.name, digest, adapter.dump_json(result).decode())
        try:
            self._save(*changed, **kwargs)
        except IntegrityError:
            return False
        with self._count_lock:
            self.transactions += 1
        return True


def _replay(found: IdempotencyRow, command: Command[R], digest: str, adapter: TypeAdapter[Any], seen: Observation) -> R:
    """The result stored under the command's key (or IdempotencyConflict when another command stored it)."""
    seen.replayed = True
    if found.command != command.name or found.digest != digest:
        raise IdempotencyConflict(found.key, command.name)
    result: R = adapter.validate_json(found.result)
    return result
