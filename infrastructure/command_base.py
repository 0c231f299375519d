"""What every command shares: the clock, the unit of work, the retry loop and idempotency.

One command is one transaction: the unit of work loads the aggregates, the domain methods
check their invariants and raise events, and ``save`` writes every pending event together
with the command's idempotency row and the changed dispatch-index rows. An optimistic
concurrency conflict re-reads and retries, a bounded number of times.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from pydantic import TypeAdapter

from run_mailbox.domain.errors import ConcurrencyConflict, IdempotencyConflict, MailboxError
from run_mailbox.domain.values import check_id, check_millis
from run_mailbox.infrastructure.idempotency import command_digest
from run_mailbox.infrastructure.persistence.rows import DispatchIndexRow, IdempotencyRow, MailboxTables
from run_mailbox.infrastructure.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from eventsourcing.application import Repository

T = TypeVar("T")
Clock = Callable[[], int]

MAX_CONFLICT_RETRIES = 24


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def new_id() -> str:
    """A time-ordered UUIDv7 string (the upstream's id format for dispatches)."""
    ms = wall_clock_ms() & ((1 << 48) - 1)
    rand = int.from_bytes(uuid.uuid4().bytes[6:], "big") & ((1 << 74) - 1)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(UUID(int=value))


class CommandBase:
    """Mixed into MailboxService (an eventsourcing Application) with the command groups."""

    clock: Clock
    max_conflict_retries: int
    unsnapshotted: Repository[UUID]
    _tx_lock: threading.Lock
    _tx_count: int

    if TYPE_CHECKING:
        recorder: Any
        mapper: Any

        @property
        def repository(self) -> Repository[UUID]: ...

        def save(self, *objs: Any, **kwargs: Any) -> Any: ...

    @property
    def transactions(self) -> int:
        """Transactions this instance committed (for benchmarks and tests)."""
        return self._tx_count

    @property
    def tables(self) -> MailboxTables:
        return self.recorder  # type: ignore[no-any-return]

    def _now(self, now: int | None) -> int:
        return self.clock() if now is None else check_millis("now", now)

    def _execute(
        self,
        command: str,
        params: dict[str, Any],
        body: Callable[[UnitOfWork], T],
        adapter: TypeAdapter[T],
        idempotency_key: str | None,
    ) -> T:
        digest = ""
        if idempotency_key is not None:
            check_id("idempotency_key", idempotency_key)
            digest = command_digest(command, params)
            found = self.tables.find_idempotency(idempotency_key)
            if found is not None:
                return self._replay(found, command, digest, adapter)
        for attempt in range(self.max_conflict_retries):
            uow = UnitOfWork(self.repository, attempt, self.unsnapshotted)
            try:
                result = body(uow)
            except MailboxError:
                if attempt + 1 < self.max_conflict_retries and uow.read_is_stale():
                    continue
                raise
            changed = uow.changed()
            kwargs: dict[str, Any] = {"index_rows": [DispatchIndexRow.of(d.record) for d in uow.changed_dispatches()]}
            if idempotency_key is not None and uow.error_after_save is None:
                kwargs["idempotency"] = IdempotencyRow(
                    idempotency_key, command, digest, adapter.dump_json(result).decode()
                )
            elif not changed:
                return result
            try:
                self.save(*changed, **kwargs)
            except IntegrityError:
                if idempotency_key is not None:
                    found = self.tables.find_idempotency(idempotency_key)
                    if found is not None:
                        return self._replay(found, command, digest, adapter)
                continue
            with self._tx_lock:
                self._tx_count += 1
            if uow.error_after_save is not None:
                raise uow.error_after_save
            return result
        raise ConcurrencyConflict(command, self.max_conflict_retries)

    @staticmethod
    def _replay(found: IdempotencyRow, command: str, digest: str, adapter: TypeAdapter[T]) -> T:
        if found.command != command or found.digest != digest:
            raise IdempotencyConflict(found.key, command)
        return adapter.validate_json(found.result)
