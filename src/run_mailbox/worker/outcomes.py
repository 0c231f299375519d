"""How an attempt ended, from what its handler returned or raised, and writing that to the mailbox.

Acks are batched: the first finished attempt's ack goes out at once, and the attempts that finish
while it is in flight are acked together by one ``ack_many`` after it (no added delay, one
transaction for many when several finish together). A write that meets store trouble
(``StoreTimeout``, ``StoreUnavailable``, persistent conflicts) is retried a few times; every
outcome command is owner-gated by the claim token, so a retry of a write that had committed is
refused (the token no longer owns the dispatch) rather than applied twice. If the store stays
unreachable the attempt gives up: its lease runs out and a sweep requeues the dispatch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from run_mailbox.domain.commands import AckItem
from run_mailbox.domain.commands.batches import MAX_BATCH
from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.errors import (
    ConcurrencyConflict,
    DispatchSuperseded,
    InvalidTransition,
    MailboxError,
    StoreError,
)
from run_mailbox.domain.messages import Message
from run_mailbox.domain.permissions import ToolTicket
from run_mailbox.domain.values import MAX_TEXT_LENGTH, DispatchStatus
from run_mailbox.infrastructure.async_service import AsyncMailboxService
from run_mailbox.worker.contract import LeaseLost, NeedsPermission

log = logging.getLogger("run_mailbox.worker")
T = TypeVar("T")
Kind = Literal["ack", "suspend", "dead_letter", "nack", "nothing"]
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
"""Pauses between the attempts of an outcome write that met store trouble."""


@dataclass(frozen=True)
class Outcome:
    """What to write for an attempt."""

    kind: Kind
    messages: list[Message] = field(default_factory=list)
    tickets: list[ToolTicket] = field(default_factory=list)
    error: str = ""


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text if len(text) <= MAX_TEXT_LENGTH else text[: MAX_TEXT_LENGTH - 3] + "..."


def outcome_of_result(result: Any) -> Outcome:
    """A handler returned ``result``: None or messages (ack), or NeedsPermission (suspend)."""
    if isinstance(result, NeedsPermission):
        return Outcome("suspend", messages=result.messages, tickets=result.tickets)
    if result is None:
        return Outcome("ack")
    try:
        messages = [m if isinstance(m, Message) else Message.model_validate(m) for m in result]
    except (TypeError, ValueError) as exc:
        return Outcome("nack", error=f"the handler returned {type(result).__name__}, not messages: {exc}")
    return Outcome("ack", messages=messages)


def outcome_of_error(exc: BaseException, permanent: tuple[type[BaseException], ...]) -> Outcome:
    """A handler raised ``exc``."""
    if isinstance(exc, NeedsPermission):
        return Outcome("suspend", messages=exc.messages, tickets=exc.tickets)
    if isinstance(exc, (LeaseLost, DispatchSuperseded)):
        return Outcome("nothing")
    if isinstance(exc, permanent):
        return Outcome("dead_letter", error=error_text(exc))
    return Outcome("nack", error=error_text(exc))


class OutcomeWriter:
    """Writes outcomes for one worker; ``retry_at`` is told when a nacked dispatch is due again."""

    def __init__(self, mailbox: AsyncMailboxService, retry_at: Callable[[int], None]) -> None:
        self.mailbox = mailbox
        self.retry_at = retry_at
        self._acks: list[tuple[AckItem, asyncio.Future[str]]] = []
        self._flushing: asyncio.Task[None] | None = None
        self.refusal = ""
        """The last refusal's text."""

    async def write(self, dispatch: DispatchRecord, outcome: Outcome) -> str:
        """Writes ``outcome``; returns what became of the dispatch: acked, suspended, dead_lettered,
        nacked, superseded (an interrupt ended the run), lost (the token no longer owns it) or
        failed (store trouble outlasted the retries)."""
        mailbox, dispatch_id, token = self.mailbox, dispatch.dispatch_id, dispatch.claim_token or ""
        if outcome.kind == "nothing":
            return "lost"
        if outcome.messages:
            thread_id, run_id, messages = dispatch.thread_id, dispatch.run_id, outcome.messages
            done, _ = await self._store("commit_messages", lambda: mailbox.commit_messages(thread_id, run_id, messages))
            if done == "refused":
                refused = f"the handler's messages were refused: {self.refusal}"
                outcome = Outcome("nack", error=refused[:MAX_TEXT_LENGTH])
            elif done != "ok":
                return done
        if outcome.kind == "ack":
            return await self._ack(AckItem(dispatch_id, claim_token=token))
        if outcome.kind == "suspend":
            done, _ = await self._store(
                "suspend", lambda: mailbox.suspend(dispatch_id, claim_token=token, tickets=outcome.tickets)
            )
            return "suspended" if done == "ok" else done
        if outcome.kind == "dead_letter":
            done, _ = await self._store(
                "dead_letter", lambda: mailbox.dead_letter(dispatch_id, claim_token=token, error=outcome.error)
            )
            return "dead_lettered" if done == "ok" else done
        return await self.nack(dispatch, outcome.error)

    async def nack(self, dispatch: DispatchRecord, error: str, retry_at: int | None = None) -> str:
        """Nacks (after the backoff, or at ``retry_at``), and says when the dispatch is due again."""
        token = dispatch.claim_token or ""
        done, record = await self._store(
            "nack", lambda: self.mailbox.nack(dispatch.dispatch_id, claim_token=token, error=error, retry_at=retry_at)
        )
        if record is not None and record.status is DispatchStatus.QUEUED:
            self.retry_at(record.available_at)
        return "nacked" if done == "ok" else done

    # ------------------------------------------------------------------ acks, batched

    async def _ack(self, item: AckItem) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._acks.append((item, future))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._acks:
            batch, self._acks = self._acks[:MAX_BATCH], self._acks[MAX_BATCH:]
            try:
                results = await self._ack_batch([item for item, _ in batch])
            except Exception as exc:  # pragma: no cover (every expected error is mapped in _ack_batch)
                log.exception("acking %d dispatches failed", len(batch))
                results = {}
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            for item, future in batch:
                if not future.done():
                    future.set_result(results.get(item.dispatch_id, "failed"))

    async def _ack_batch(self, items: list[AckItem]) -> dict[str, str]:
        if len(items) == 1:
            (item,) = items
            done, _ = await self._store("ack", lambda: self.mailbox.ack(item.dispatch_id, claim_token=item.claim_token))
            return {item.dispatch_id: "acked" if done == "ok" else done}
        done, result = await self._store("ack_many", lambda: self.mailbox.ack_many(items))
        if result is None:
            return {item.dispatch_id: done for item in items}
        outcomes = {record.dispatch_id: "acked" for record in result.acked}
        for refusal in result.refused:
            superseded = refusal.error == DispatchSuperseded.__name__
            outcomes[refusal.dispatch_id] = "superseded" if superseded else "lost"
            log.info("ack of %s refused: %s", refusal.dispatch_id, refusal.message)
        return outcomes

    async def idle(self) -> None:
        """Returns once no ack is pending."""
        while self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)

    # ------------------------------------------------------------------ store trouble

    async def _store(self, operation: str, call: Callable[[], Awaitable[T]]) -> tuple[str, T | None]:
        """Runs one write: ("ok", result), or ("superseded" | "lost" | "refused" | "failed", None)."""
        for attempt, pause in enumerate((0.0, *RETRY_DELAYS_S)):
            if pause:
                await asyncio.sleep(pause)
            try:
                return "ok", await call()
            except DispatchSuperseded:
                return "superseded", None  # the thread was interrupted: the mailbox ended the run
            except InvalidTransition as exc:
                # The token no longer owns the dispatch: its lease was lost, or (on a retry) the
                # first try had committed after all.
                level = logging.DEBUG if attempt else logging.INFO
                log.log(level, "%s refused: %s", operation, exc)
                return "lost", None
            except (StoreError, ConcurrencyConflict) as exc:
                log.warning("%s met store trouble (try %d): %s", operation, attempt + 1, exc)
            except MailboxError as exc:
                log.error("%s refused: %s", operation, exc)
                self.refusal = error_text(exc)
                return "refused", None
        log.error("%s gave up after %d tries: the lease will run out and a sweep requeue it", operation, attempt + 1)
        return "failed", None
