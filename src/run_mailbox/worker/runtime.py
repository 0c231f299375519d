"""The worker: claims dispatches as slots free up, runs a handler on each, sweeps expired leases, and
stops gracefully. One implementation on asyncio; sync hosts call :meth:`Worker.run` (blocking) or
:meth:`Worker.start` (a background thread), asyncio hosts await :meth:`Worker.serve`."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import socket
import threading
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.policies import MAX_BATCH_LIMIT
from run_mailbox.infrastructure.async_service import AsyncMailboxService
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.worker.attempt import SHUTTING_DOWN, Attempt
from run_mailbox.worker.claims import PAUSES_S, free_slots
from run_mailbox.worker.contract import PermanentError
from run_mailbox.worker.job import Handler
from run_mailbox.worker.outcomes import OutcomeWriter
from run_mailbox.worker.wakeup import Listener, listens

log = logging.getLogger("run_mailbox.worker")


def default_consumer_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    """Runs ``handler`` on dispatches claimed from ``mailbox`` (a :class:`MailboxService` or an
    :class:`AsyncMailboxService`), at most ``concurrency`` at a time (a slot frees when its handler
    ends: the next claim overlaps the outcome's write; see ``claims.free_slots``).

    ``lease_ms`` is each claim's lease, extended every ``heartbeat_s`` (default: a third of it)
    while the handler runs. ``poll_interval_s`` bounds an idle worker's wait between claim attempts
    (default 1 s when Postgres announces new work, which wakes the worker at once; 0.1 s on the other
    backends). Expired leases (of any worker) are swept every ``sweep_interval_s``. On stop, running
    handlers get ``grace_s`` to finish; those still running then are released (nacked with "worker
    shutting down", due again at once). Exceptions of ``permanent_errors`` dead-letter; others nack.
    ``listen=False`` turns the Postgres wake-up off (e.g. behind a pooler that does not pass LISTEN on).
    """

    def __init__(
        self,
        mailbox: MailboxService | AsyncMailboxService,
        handler: Handler,
        *,
        concurrency: int = 4,
        lease_ms: int = 30_000,
        consumer_id: str | None = None,
        grace_s: float = 30.0,
        poll_interval_s: float | None = None,
        heartbeat_s: float | None = None,
        sweep_interval_s: float = 5.0,
        permanent_errors: Sequence[type[BaseException]] = (PermanentError,),
        listen: bool = True,
    ) -> None:
        if concurrency < 1 or concurrency > MAX_BATCH_LIMIT:
            raise ValueError(f"concurrency must be between 1 and {MAX_BATCH_LIMIT}, not {concurrency}")
        if lease_ms < 1:
            raise ValueError(f"lease_ms must be positive, not {lease_ms}")
        self._given = mailbox if isinstance(mailbox, AsyncMailboxService) else None
        self.service = mailbox.service if isinstance(mailbox, AsyncMailboxService) else mailbox
        self.handler: Any = handler
        self.handler_is_async = inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)  # noqa: B004 (an object with an async __call__)
        )
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.consumer_id = consumer_id or default_consumer_id()
        self.grace_s = grace_s
        self.poll_interval_s = poll_interval_s
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else lease_ms / 3 / 1000
        self.sweep_interval_s = sweep_interval_s
        self.permanent_errors = tuple(permanent_errors)
        self.listen = listen
        self.stats: Counter[str] = Counter()
        """What became of the claimed dispatches: claimed, then acked, nacked, dead_lettered, suspended,
        released (at shutdown), lost (the lease was lost: nothing written), superseded (an interrupt
        fenced the outcome), refused, failed (store trouble outlasted the retries) or cancelled (the
        serving task was cancelled); and reclaimed (expired leases this worker's sweeps requeued)."""
        self.stopping_flag = threading.Event()
        self.ready = threading.Event()
        """Set once the worker is serving (on Postgres: listening), or has stopped."""
        self.stopped = threading.Event()
        self.listening = False
        self.error: BaseException | None = None
        """What ended :meth:`run` with an exception, if anything did."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_early = False
        self._thread: threading.Thread | None = None
        self._attempts: dict[asyncio.Task[str], Attempt] = {}
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ sync hosts

    def run(self, *, handle_signals: bool | None = None) -> None:
        """Serves in this thread until :meth:`stop` (or SIGTERM/SIGINT, handled by default when this
        is the main thread: the first starts the graceful stop, a second one ends the grace period)."""
        if handle_signals is None:
            handle_signals = threading.current_thread() is threading.main_thread()
        try:
            asyncio.run(self.serve(handle_signals=handle_signals))
        except BaseException as exc:
            self.error = exc
            raise

    def start(self) -> threading.Thread:
        """Serves in a background thread; returns once the worker is ready. Stop with :meth:`stop`."""
        self._thread = threading.Thread(target=self.run, kwargs={"handle_signals": False}, name="mailbox-worker")
        self._thread.start()
        while not self.ready.wait(0.05) and self._thread.is_alive():
            pass
        if self.stopped.is_set():  # it ended already: stopped before it started, or failed to start
            self._thread.join()
            if self.error is not None:
                raise RuntimeError("the worker failed to start") from self.error
        return self._thread

    def stop(self, *, hurry: bool = False) -> None:
        """Stops claiming and lets running handlers finish within the grace period (thread-safe,
        returns at once). Calling it again, or with ``hurry``, ends the grace period now."""
        loop = self._loop
        if loop is None:
            self._stop_early = True
            self.stopping_flag.set()
            return
        with contextlib.suppress(RuntimeError):  # the loop has closed: stopped already
            loop.call_soon_threadsafe(self._request_stop, hurry)

    def join(self, timeout: float | None = None) -> bool:
        """Waits for a worker started with :meth:`start` to stop; True once stopped."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.stopped.is_set()

    # ------------------------------------------------------------------ asyncio hosts

    async def serve(self, *, handle_signals: bool = False) -> None:
        """Serves until :meth:`stop`, then drains (see the class). With ``handle_signals``, SIGTERM
        and SIGINT stop it (the loop must run in the main thread)."""
        if self._loop is not None or self.stopped.is_set():
            raise RuntimeError("a worker serves once: this one is serving or has served already")
        loop = self._loop = asyncio.get_running_loop()
        self._stop, self._hurry, self._kick = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.mailbox = self._given or AsyncMailboxService(self.service)
        self.writer = OutcomeWriter(self.mailbox, self._due_at)
        helpers: list[asyncio.Task[None]] = []
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._request_stop, False)
        try:
            if self._stop_early:
                self._request_stop(False)
            if self.listen and listens(self.service.recorder):
                listener = Listener(self.service.recorder, self._kick.set)
                helpers.append(asyncio.create_task(listener.run(), name="mailbox-worker-listen"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener.ready.wait(), 10)
                self.listening = listener.ready.is_set() and listener.error is None
            if self.poll_interval_s is None:
                self.poll_interval_s = 1.0 if self.listening else 0.1
            helpers.append(asyncio.create_task(self._sweep(), name="mailbox-worker-sweep"))
            log.info(
                "worker %s serving: concurrency %d, lease %d ms", self.consumer_id, self.concurrency, self.lease_ms
            )
            self.ready.set()
            await self._claim_loop()
            await self._drain()
        finally:
            for task in [*helpers, *self._attempts]:
                task.cancel()
            await asyncio.gather(*helpers, *self._attempts, return_exceptions=True)
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            if self._given is None:
                await self.mailbox.close()
            self._loop = None
            self.ready.set()
            self.stopped.set()
            log.info("worker %s stopped: %s", self.consumer_id, dict(self.stats))

    async def __aenter__(self) -> Worker:
        """``async with worker:`` serves in a task until the block ends, then stops gracefully."""
        task = self._task = asyncio.create_task(self.serve())
        while not self.ready.is_set() and not task.done():
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()
        if self._task is not None:
            await self._task

    # ------------------------------------------------------------------ the loops

    def _request_stop(self, hurry: bool) -> None:
        """The first request stops claiming and starts the grace period; another one (or ``hurry``) ends it."""
        if (hurry or self._stop.is_set()) and not self._hurry.is_set():
            log.info("worker %s: grace period ended early", self.consumer_id)
            self._hurry.set()
        if not self._stop.is_set():
            self.stopping_flag.set()
            self._stop.set()
            self._kick.set()
            log.info(
                "worker %s stopping: %d in flight, grace %.1f s", self.consumer_id, len(self._attempts), self.grace_s
            )

    async def _claim_loop(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._kick.clear()  # a notification from now on means another try
            reporting = sum(attempt.reporting for attempt in self._attempts.values())
            free = free_slots(self.concurrency, len(self._attempts), reporting)
            if free > 0:
                try:
                    claimed = await self.mailbox.claim_next(
                        consumer_id=self.consumer_id, lease_ms=self.lease_ms, limit=free, start=True
                    )
                except Exception as exc:  # store trouble (typed), or anything unexpected: pause, go on
                    pause = PAUSES_S[min(failures, len(PAUSES_S) - 1)]
                    failures += 1
                    log.warning("claiming failed (%s); again in %.2f s", exc, pause)
                    await self._wait(self._stop, pause)
                    continue
                failures = 0
                for record in claimed:
                    self._spawn(record)
            assert self.poll_interval_s is not None
            await self._wait(self._kick, self.poll_interval_s)

    def handler_ended(self) -> None:
        """An attempt's handler has ended and its outcome is being written: its slot is free."""
        self._kick.set()

    def _spawn(self, record: DispatchRecord) -> None:
        attempt = Attempt(self, record)
        task = asyncio.create_task(attempt.run(), name=f"mailbox-attempt {record.dispatch_id}")
        self._attempts[task] = attempt
        self.stats["claimed"] += 1
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[str]) -> None:
        self._attempts.pop(task, None)
        self._kick.set()  # a slot is free
        if task.cancelled():
            self.stats["cancelled"] += 1
        elif (error := task.exception()) is not None:
            self.stats["failed"] += 1
            log.error("an attempt failed unexpectedly", exc_info=error)
        else:
            self.stats[task.result()] += 1

    def _due_at(self, available_at: int) -> None:
        """A nacked dispatch is due again at ``available_at``: try to claim then (without waiting for the poll)."""
        if self._loop is not None and not self._stop.is_set():
            delay = max(0.0, (available_at - self.service.clock()) / 1000)
            self._loop.call_later(delay + 0.001, self._kick.set)

    async def _sweep(self) -> None:
        while True:
            try:
                reclaimed = await self.mailbox.reclaim_expired_leases(limit=100)
            except Exception as exc:
                log.warning("sweeping expired leases failed: %s", exc)
            else:
                if reclaimed:
                    self.stats["reclaimed"] += len(reclaimed)
                    self._kick.set()
            await asyncio.sleep(self.sweep_interval_s)

    async def _drain(self) -> None:
        """Gives running handlers the grace period, then releases the attempts still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace_s
        while self._attempts and not self._hurry.is_set() and (left := deadline - loop.time()) > 0:
            hurry = asyncio.create_task(self._hurry.wait())
            await asyncio.wait({*self._attempts, hurry}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            hurry.cancel()
        for attempt in list(self._attempts.values()):
            attempt.interrupt(SHUTTING_DOWN)
        await asyncio.gather(*self._attempts, return_exceptions=True)
        await self.writer.idle()

    @staticmethod
    async def _wait(event: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
