"""One attempt: run the handler on a claimed dispatch, heartbeat its lease, then write how it went.

The handler runs as a task (async handler) or on a daemon thread of its own (sync handler), while
a heartbeat extends the lease every ``heartbeat_s``. The attempt waits for whichever comes first:

- the handler ends: the heartbeat stops (an extension in flight is awaited, so it never races the
  outcome), and the outcome is written (ack, suspend, dead-letter or nack);
- the heartbeat finds the lease lost (``extend_lease`` returns False: an interrupt fenced the
  dispatch or its lease ran out and was reclaimed; or it raises ``DispatchSuperseded``): the job is
  cancelled (an async handler's task too) and nothing more is written for the dispatch;
- the worker releases the attempt at the end of its shutdown grace period: the job is cancelled
  likewise, and the dispatch is nacked with "worker shutting down", due again at once.

A sync handler's thread cannot be stopped from outside: it runs on until it returns (or notices
``job.cancelled``), and what it returns is then ignored.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from typing import Any, Protocol

from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.errors import ConcurrencyConflict, DispatchSuperseded, StoreError
from run_mailbox.infrastructure.async_service import AsyncMailboxService
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.worker.job import Job
from run_mailbox.worker.outcomes import OutcomeWriter, outcome_of_error, outcome_of_result

log = logging.getLogger("run_mailbox.worker")
LEASE_LOST = "lease lost"
SHUTTING_DOWN = "worker shutting down"


def _forget(future: asyncio.Future[Any]) -> None:
    """Retrieves what a let-go handler came to, so that asyncio does not warn about it."""
    if not future.cancelled():
        future.exception()


class Host(Protocol):
    """What an attempt needs of its worker (``runtime.Worker``)."""

    service: MailboxService
    mailbox: AsyncMailboxService
    writer: OutcomeWriter
    handler: Any
    handler_is_async: bool
    lease_ms: int
    heartbeat_s: float
    permanent_errors: tuple[type[BaseException], ...]
    stopping_flag: threading.Event

    def handler_ended(self) -> None: ...


class Attempt:
    """One claimed dispatch in the hands of a worker."""

    def __init__(self, worker: Host, dispatch: DispatchRecord) -> None:
        self.worker = worker
        self.dispatch = dispatch
        self.job = Job(dispatch, worker.mailbox, worker.stopping_flag)
        self._settled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Resolved when the handler ends or by :meth:`interrupt`, whichever comes first: one future and
        a done callback, where ``asyncio.wait`` on two futures builds sets, a waiter and callbacks on both
        (3-14 us of the loop's CPU a job less in three alternating runs of ``bench.worker_cpu``)."""
        self.reason: str | None = None
        self.finishing = False
        """The handler has ended and the outcome is being written: too late to release it."""
        self.reporting = False
        """The handler has ended or been let go, and what became of the dispatch is being written: its slot is free."""
        self._beat_stopped = False
        self._beat_timer: asyncio.TimerHandle | None = None
        self._extension: asyncio.Task[None] | None = None

    async def run(self) -> str:
        """Runs the attempt to its end; returns what became of the dispatch (see OutcomeWriter.write)."""
        handler = self._start_handler()
        self._next_beat()
        try:
            if not handler.done():
                handler.add_done_callback(self._settle)
                await self._settled
        finally:
            if not handler.done() and self.reason is None:
                self.interrupt("worker cancelled")  # the serving task itself was cancelled
            if not handler.done():
                handler.cancel()  # a task is cancelled; a thread's future is only let go
                handler.add_done_callback(_forget)
            else:
                self.finishing = True
            await self._stop_heartbeat()
        self.reporting = True
        self.worker.handler_ended()
        if self.reason == SHUTTING_DOWN:
            now = self.worker.service.clock()
            released = await self.worker.writer.nack(self.dispatch, SHUTTING_DOWN, retry_at=now)
            return "released" if released == "nacked" else released
        if self.reason is not None:
            log.info("dispatch %s: %s, nothing more written", self.dispatch.dispatch_id, self.reason)
            return "lost"
        try:
            outcome = outcome_of_result(handler.result())
        except Exception as exc:
            outcome = outcome_of_error(exc, self.worker.permanent_errors)
            log.log(
                logging.INFO if outcome.kind != "nack" else logging.WARNING,
                "handler of %s raised %r",
                self.dispatch.dispatch_id,
                exc,
            )
        return await self.worker.writer.write(self.dispatch, outcome)

    def interrupt(self, reason: str) -> None:
        """Stops waiting for the handler: ``LEASE_LOST`` writes nothing more, ``SHUTTING_DOWN``
        releases the dispatch. No effect once the handler has ended."""
        if self.reason is None and not self.finishing:
            self.reason = reason
            self.job.cancel(reason)
            self._settle(None)

    def _settle(self, _: object) -> None:
        if not self._settled.done():
            self._settled.set_result(None)

    # ------------------------------------------------------------------ the handler

    def _start_handler(self) -> asyncio.Future[Any]:
        if self.worker.handler_is_async:
            task: asyncio.Future[Any] = asyncio.ensure_future(self.worker.handler(self.job))
            return task
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()

        def settle(result: Any, error: BaseException | None) -> None:
            if future.done():
                return  # let go after an interrupt: whatever it came to is ignored
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        def call() -> None:
            try:
                result = context.run(self.worker.handler, self.job)
            except BaseException as exc:  # a handler's SystemExit must not end the worker
                error = exc if isinstance(exc, Exception) else RuntimeError(f"handler raised {exc!r}")
                loop.call_soon_threadsafe(settle, None, error)
            else:
                loop.call_soon_threadsafe(settle, result, None)

        name = f"mailbox-handler {self.dispatch.dispatch_id}"
        threading.Thread(target=self._guarded(call, loop), name=name, daemon=True).start()
        return future

    @staticmethod
    def _guarded(call: Any, loop: asyncio.AbstractEventLoop) -> Any:
        def run() -> None:
            try:
                call()
            except RuntimeError:  # the loop closed while the handler ran: nobody waits for it any more
                if not loop.is_closed():
                    raise

        return run

    # ------------------------------------------------------------------ the lease

    # The heartbeat is a timer, and a task only while an extension is written: most handlers end before
    # the first beat is due, and an attempt then costs the loop its handler and little more (a task that
    # waited for each beat made a batch of ten attempts take twice as long to reach their acks).

    def _next_beat(self) -> None:
        """Schedules the next extension ``heartbeat_s`` from now."""
        self._beat_timer = asyncio.get_running_loop().call_later(self.worker.heartbeat_s, self._beat)

    def _beat(self) -> None:
        self._beat_timer = None
        if not self._beat_stopped:
            self._extension = asyncio.create_task(self._extend(), name=f"heartbeat {self.dispatch.dispatch_id}")

    async def _extend(self) -> None:
        """Extends the lease once, then schedules the next beat; interrupts the attempt once the lease is lost."""
        worker, dispatch = self.worker, self.dispatch
        try:
            owned = await worker.mailbox.extend_lease(
                dispatch.dispatch_id, claim_token=self.job.claim_token, lease_ms=worker.lease_ms
            )
        except DispatchSuperseded:
            owned = False
        except (StoreError, ConcurrencyConflict) as exc:
            log.warning("extending the lease of %s failed: %s (trying again)", dispatch.dispatch_id, exc)
            owned = True  # not known to be lost: the next beat tries again
        if not owned:
            self.interrupt(LEASE_LOST)
        elif not self._beat_stopped:
            self._next_beat()

    async def _stop_heartbeat(self) -> None:
        """No more beats; an extension in flight completes before anything else is written."""
        self._beat_stopped = True
        if self._beat_timer is not None:
            self._beat_timer.cancel()
        if self._extension is not None:
            await asyncio.shield(self._extension)
