"""What a handler is handed: the claimed dispatch, ways to reach the mailbox, and its cancellation signals."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.messages import Message
from run_mailbox.domain.results import CheckpointResult
from run_mailbox.domain.run_record import RunRecord
from run_mailbox.infrastructure.async_service import AsyncMailboxService
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.worker.contract import LeaseLost, Result


def as_messages(messages: Sequence[Message | dict[str, Any]]) -> list[Message]:
    return [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]


class Job:
    """One attempt of one dispatch, as its handler sees it.

    ``dispatch`` is the claimed record (running: its start is recorded); ``run_id``, ``thread_id``
    and ``dispatch_id`` are its ids. ``service`` (sync) and ``mailbox`` (async) reach the same store.

    Cancellation: ``cancelled`` becomes true when the attempt lost its dispatch (the lease was lost:
    an interrupt fenced it, or it expired and was reclaimed) or when the worker released it at the
    end of its shutdown grace period; ``cancel_reason`` says which. An async handler is also
    cancelled (``CancelledError``); a sync one should look at ``cancelled`` (or sleep with
    :meth:`wait`, which returns early) between steps and stop: whatever it returns afterwards is
    ignored. ``stopping`` becomes true when the worker starts shutting down: the handler may still
    finish within the grace period.
    """

    def __init__(self, dispatch: DispatchRecord, mailbox: AsyncMailboxService, stopping: threading.Event) -> None:
        self.dispatch = dispatch
        self.mailbox = mailbox
        self._stopping = stopping
        self._cancelled = threading.Event()
        self.cancel_reason: str | None = None

    # ------------------------------------------------------------------ ids

    @property
    def dispatch_id(self) -> str:
        return self.dispatch.dispatch_id

    @property
    def run_id(self) -> str:
        return self.dispatch.run_id

    @property
    def thread_id(self) -> str:
        return self.dispatch.thread_id

    @property
    def claim_token(self) -> str:
        assert self.dispatch.claim_token is not None
        return self.dispatch.claim_token

    @property
    def service(self) -> MailboxService:
        return self.mailbox.service

    # ------------------------------------------------------------------ cancellation

    @property
    def cancelled(self) -> bool:
        """True once the attempt lost its dispatch: stop, nothing more will be written for it."""
        return self._cancelled.is_set()

    @property
    def stopping(self) -> bool:
        """True once the worker is shutting down (finish within the grace period if you can)."""
        return self._stopping.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleeps up to ``seconds``, waking early when the attempt is cancelled; returns ``cancelled``."""
        return self._cancelled.wait(seconds)

    def check(self) -> None:
        """Raises :class:`LeaseLost` if the attempt is cancelled."""
        if self._cancelled.is_set():
            raise LeaseLost(f"dispatch {self.dispatch_id}: {self.cancel_reason}")

    def cancel(self, reason: str) -> None:
        """Marks the attempt cancelled (the worker calls it; a handler has no reason to)."""
        if not self._cancelled.is_set():
            self.cancel_reason = reason
            self._cancelled.set()

    # ------------------------------------------------------------------ the mailbox

    def commit_messages(self, messages: Sequence[Message | dict[str, Any]]) -> CheckpointResult:
        """Checkpoints messages the run produced now (sync handlers). Committing the same messages
        again returns the first result and writes nothing. Raises :class:`LeaseLost` once cancelled."""
        self.check()
        return self.service.commit_messages(self.thread_id, self.run_id, as_messages(messages))

    async def acommit_messages(self, messages: Sequence[Message | dict[str, Any]]) -> CheckpointResult:
        """:meth:`commit_messages` for async handlers."""
        self.check()
        return await self.mailbox.commit_messages(self.thread_id, self.run_id, as_messages(messages))

    def get_run(self) -> RunRecord:
        """The run (with the decisions made so far, when it resumes after asking for permission)."""
        return self.service.get_run(self.run_id)

    async def aget_run(self) -> RunRecord:
        """:meth:`get_run` for async handlers."""
        return await self.mailbox.get_run(self.run_id)

    def __repr__(self) -> str:
        return f"Job(dispatch_id={self.dispatch_id!r}, run_id={self.run_id!r}, thread_id={self.thread_id!r})"


SyncHandler: TypeAlias = Callable[[Job], Result]
AsyncHandler: TypeAlias = Callable[[Job], Awaitable[Result]]
Handler: TypeAlias = SyncHandler | AsyncHandler
"""A worker's handler: a function (sync or async) of a :class:`Job` (see ``run_mailbox.worker.contract``)."""
