"""AsyncMailboxService: the mailbox's commands and queries as awaitables, for asyncio hosts.

The mailbox does blocking I/O (psycopg, sqlite3). The async service runs each call of a
:class:`MailboxService` on a bounded thread pool of its own, so the event loop never blocks and at
most ``max_workers`` calls hold a database connection at once (by default, on Postgres, as many as
the connection pool can open: ``POSTGRES_POOL_SIZE + POSTGRES_MAX_OVERFLOW``). A command's
arguments are checked on the loop before it is handed to the pool, so a bad argument raises
:class:`~run_mailbox.domain.errors.InvalidArgument` at once; every other error is raised from the
``await`` just as the sync method raises it.

Each method is made from the same command model as the sync one (``submit = acommand(Submit)``),
so it takes exactly the model's arguments and mypy checks calls against them.

Cancelling an awaiting task does not stop the command it awaits: the thread finishes it, and it
may commit. Give an ``idempotency_key`` to commands you may retry after a cancellation or a
timeout: the retry then returns the first result and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, Self, TypeVar, overload

from eventsourcing.postgres import PostgresFactory

from run_mailbox.domain import commands as c
from run_mailbox.domain.commands import Command
from run_mailbox.domain.results import RepairReport
from run_mailbox.infrastructure.queries import EXPORT_PAGE, MailboxQueries
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.projections.canonical import CanonicalEvent

P = ParamSpec("P")
R = TypeVar("R")
DEFAULT_WORKERS = 8
"""Threads of the pool on SQLite and in memory (their writes are serialised anyway)."""


def default_workers(service: MailboxService) -> int:
    """As many threads as the service's connection pool can open (Postgres), else DEFAULT_WORKERS."""
    if isinstance(service.factory, PostgresFactory):
        env = service.env
        return max(1, int(env.get("POSTGRES_POOL_SIZE") or 2) + int(env.get("POSTGRES_MAX_OVERFLOW") or 0))
    return DEFAULT_WORKERS


class acommand(Generic[P, R]):
    """The async counterpart of the ``command`` descriptor: ``await service.submit(...)`` takes
    exactly ``Submit``'s arguments, builds the model (refusing a bad argument at once) and runs it
    on the service's thread pool."""

    def __init__(self, model: Callable[P, Command[R]]) -> None:
        self.model = model
        self.__doc__ = model.__doc__
        self.__signature__ = inspect.signature(model).replace(return_annotation=getattr(model, "result_type", None))
        self.name = ""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: AsyncMailboxService, owner: type[Any]) -> Callable[P, Awaitable[R]]: ...

    def __get__(self, obj: AsyncMailboxService | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        model = self.model

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            return await obj.execute(model(*args, **kwargs))

        run.__name__ = run.__qualname__ = self.name
        run.__doc__ = self.__doc__
        run.__signature__ = self.__signature__  # type: ignore[attr-defined]
        return run


class blocking(Generic[P, R]):
    """Makes an awaitable of a blocking method of the wrapped service (``component`` None) or of
    one of its components (``"queries"``), run on the service's thread pool."""

    def __init__(self, method: Callable[Concatenate[Any, P], R], component: str | None = None) -> None:
        self.method_name = method.__name__
        self.component = component
        self.__doc__ = method.__doc__

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> Self: ...

    @overload
    def __get__(self, obj: AsyncMailboxService, owner: type[Any]) -> Callable[P, Awaitable[R]]: ...

    def __get__(self, obj: AsyncMailboxService | None, owner: type[Any]) -> Any:
        if obj is None:
            return self
        target = obj.service if self.component is None else getattr(obj.service, self.component)
        method = getattr(target, self.method_name)

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            result: R = await obj.call(method, *args, **kwargs)
            return result

        run.__name__ = run.__qualname__ = self.method_name
        run.__doc__ = self.__doc__
        return run


class AsyncMailboxService:
    """The mailbox for asyncio hosts: every command and query of :class:`MailboxService`, awaitable.

    Wraps ``service`` (the sync service, which other threads may use at the same time), or makes
    one from ``env`` and ``clock`` (closed with this one). ``max_workers`` bounds the thread pool
    (default: :func:`default_workers`). Use it as an async context manager, or call ``close()``.
    """

    def __init__(
        self,
        service: MailboxService | None = None,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], int] | None = None,
        max_workers: int | None = None,
    ) -> None:
        if service is not None and (env is not None or clock is not None):
            raise TypeError("give either a service or env/clock to make one, not both")
        self.service = service if service is not None else MailboxService(env=env, clock=clock)
        self._owns_service = service is None
        self.max_workers = max_workers or default_workers(self.service)
        self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="mailbox")

    async def call(self, function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Runs any blocking call (of this mailbox, of a ``ViewHost`` on it, ...) on the pool, in a
        copy of the caller's context (so a command's span is a child of the caller's, as with
        ``asyncio.to_thread``)."""
        loop = asyncio.get_running_loop()
        call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
        return await loop.run_in_executor(self._pool, call)

    async def execute(self, cmd: Command[R]) -> R:
        """Runs one command in one transaction, on the pool, and returns its result."""
        return await self.call(self.service.execute, cmd)

    # ------------------------------------------------------------------ commands

    submit = acommand(c.Submit)
    submit_many = acommand(c.SubmitMany)
    cancel = acommand(c.Cancel)
    interrupt = acommand(c.Interrupt)
    claim = acommand(c.Claim)
    claim_dispatch = acommand(c.ClaimDispatch)
    claim_next = acommand(c.ClaimNext)
    extend_lease = acommand(c.ExtendLease)
    reclaim_expired_leases = acommand(c.ReclaimExpiredLeases)
    record_start = acommand(c.RecordStart)
    ack = acommand(c.Ack)
    ack_many = acommand(c.AckMany)
    nack = acommand(c.Nack)
    dead_letter = acommand(c.DeadLetter)
    suspend = acommand(c.Suspend)
    decide = acommand(c.Decide)
    finish_run = acommand(c.FinishRun)
    commit_messages = acommand(c.CommitMessages)

    async def repair_checkpoints(self) -> RepairReport:
        """See :meth:`MailboxService.repair_checkpoints`."""
        return await self.call(self.service.repair_checkpoints)

    async def rebuild_dispatch_index(self) -> int:
        """See :meth:`MailboxService.rebuild_dispatch_index`."""
        return await self.call(self.service.rebuild_dispatch_index)

    # ------------------------------------------------------------------ queries

    get_dispatch = blocking(MailboxQueries.get_dispatch, "queries")
    get_run = blocking(MailboxQueries.get_run, "queries")
    get_mailbox = blocking(MailboxQueries.get_mailbox, "queries")
    thread_epoch = blocking(MailboxQueries.thread_epoch, "queries")
    list_dispatches = blocking(MailboxQueries.list_dispatches, "queries")
    count_by_status = blocking(MailboxQueries.count_by_status, "queries")
    queued_thread_ids = blocking(MailboxQueries.queued_thread_ids, "queries")
    list_terminal_dispatches = blocking(MailboxQueries.list_terminal_dispatches, "queries")
    ready_dispatch_ids = blocking(MailboxQueries.ready_dispatch_ids, "queries")
    canonical_events = blocking(MailboxQueries.canonical_events, "queries")

    async def iter_canonical_events(
        self, *, after: int = 0, upstream_only: bool = False
    ) -> AsyncIterator[CanonicalEvent]:
        """Every canonical envelope after position ``after``, up to the log's end when called, page
        by page (each page read on the pool)."""
        end = await self.call(lambda: self.service.recorder.max_notification_id() or 0)
        position = after
        while position < end:
            page = await self.canonical_events(after=position, limit=EXPORT_PAGE, upstream_only=upstream_only)
            for envelope in page:
                yield envelope
            position = page[-1].position if page else position + EXPORT_PAGE

    # ------------------------------------------------------------------ lifetime

    async def close(self) -> None:
        """Waits for the calls in flight, stops the pool and, if this object made the service, closes it."""
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)
        if self._owns_service:
            self.service.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()
