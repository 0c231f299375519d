"""Dispatch commands: submit, claim, lease, start, ack, nack, dead-letter, cancel, interrupt, reclaim."""

from __future__ import annotations

import random
import uuid

from pydantic import TypeAdapter

from run_mailbox.domain import policies
from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.errors import DispatchSuperseded, DuplicateDispatch, DuplicateRun
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.run import Run
from run_mailbox.domain.values import (
    DispatchStatus,
    RunStatus,
    TerminationReason,
    check_id,
    check_int,
    check_millis,
    check_optional_id,
    check_text,
)
from run_mailbox.infrastructure.command_base import CommandBase, new_id
from run_mailbox.infrastructure.results import InterruptResult
from run_mailbox.infrastructure.unit_of_work import UnitOfWork

_DISPATCH = TypeAdapter(DispatchRecord)
_OPTIONAL_DISPATCH = TypeAdapter(DispatchRecord | None)
_DISPATCHES = TypeAdapter(list[DispatchRecord])
_BOOL = TypeAdapter(bool)
_INTERRUPT = TypeAdapter(InterruptResult)

# last_error strings for dispatches superseded on their owner's next write (spec payloads 9)
FENCED_AT = {
    "extend_lease": "claimed dispatch superseded during lease renewal",
    "record_start": "claimed dispatch superseded before runtime start",
    "ack": "claimed dispatch superseded by newer dispatch epoch",
    "nack": "claimed dispatch superseded before nack",
    "dead_letter": "claimed dispatch superseded before dead letter",
    "suspend": "claimed dispatch superseded before suspend",
    "reclaim": "claimed dispatch lease expired after interrupt",
}
SUPERSEDED_BY_INTERRUPT = "queued dispatch superseded by interrupt"


class DispatchCommands(CommandBase):
    def submit(
        self,
        thread_id: str,
        run_id: str,
        *,
        agent_id: str = "default",
        priority: int = policies.DEFAULT_PRIORITY,
        dedupe_key: str | None = None,
        max_attempts: int = policies.DEFAULT_MAX_ATTEMPTS,
        available_at: int | None = None,
        dispatch_id: str | None = None,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> DispatchRecord:
        """Queues a new run on its thread; returns the new dispatch."""
        check_id("thread_id", thread_id)
        check_id("run_id", run_id)
        check_id("agent_id", agent_id)
        check_int("priority", priority, low=0, high=policies.MAX_PRIORITY)
        check_optional_id("dedupe_key", dedupe_key)
        check_int("max_attempts", max_attempts, low=1, high=policies.MAX_MAX_ATTEMPTS)
        if available_at is not None:
            check_millis("available_at", available_at)
        check_optional_id("dispatch_id", dispatch_id)
        at = self._now(now)
        params = {
            "thread_id": thread_id,
            "run_id": run_id,
            "agent_id": agent_id,
            "priority": priority,
            "dedupe_key": dedupe_key,
            "max_attempts": max_attempts,
            "available_at": available_at,
            "dispatch_id": dispatch_id,
        }
        new_dispatch_id = dispatch_id or new_id()

        def body(uow: UnitOfWork) -> DispatchRecord:
            # Creating, not reading: the first try lets the store refuse an existing run or
            # dispatch id (a unique key); only a retry after such a conflict looks them up.
            if uow.attempt > 0 and uow.find_run(run_id) is not None:
                raise DuplicateRun(run_id)
            if uow.attempt > 0 and uow.find_dispatch(new_dispatch_id) is not None:
                raise DuplicateDispatch(new_dispatch_id)
            mailbox = uow.mailbox(thread_id, at)
            due = at if available_at is None else available_at
            mailbox.admit(
                dispatch_id=new_dispatch_id,
                priority=priority,
                created_at=at,
                available_at=due,
                dedupe_key=dedupe_key,
                now=at,
            )
            dispatch = uow.add(
                Dispatch.enqueue(
                    dispatch_id=new_dispatch_id,
                    thread_id=thread_id,
                    run_id=run_id,
                    priority=priority,
                    dedupe_key=dedupe_key,
                    max_attempts=max_attempts,
                    epoch=mailbox.epoch,
                    available_at=due,
                    now=at,
                )
            )
            uow.add(
                Run.create(run_id=run_id, thread_id=thread_id, agent_id=agent_id, dispatch_id=new_dispatch_id, now=at)
            )
            return dispatch.record  # type: ignore[no-any-return]

        return self._execute("submit", params, body, _DISPATCH, idempotency_key)

    def claim(
        self,
        thread_id: str,
        *,
        consumer_id: str,
        lease_ms: int = policies.DEFAULT_LEASE_MS,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> DispatchRecord | None:
        """Claims the thread's best ready dispatch, or returns None when there is none."""
        check_id("thread_id", thread_id)
        check_id("consumer_id", consumer_id)
        self._check_lease(lease_ms)
        at = self._now(now)
        token = uuid.uuid4().hex

        def body(uow: UnitOfWork) -> DispatchRecord | None:
            mailbox = uow.find_mailbox(thread_id)
            if mailbox is None:
                return None
            best = mailbox.best_ready(at)
            if best is None:
                return None
            return self._grant(uow, mailbox, uow.dispatch(best), consumer_id, token, lease_ms, at)

        params = {"thread_id": thread_id, "consumer_id": consumer_id, "lease_ms": lease_ms}
        return self._execute("claim", params, body, _OPTIONAL_DISPATCH, idempotency_key)

    def claim_dispatch(
        self,
        dispatch_id: str,
        *,
        consumer_id: str,
        lease_ms: int = policies.DEFAULT_LEASE_MS,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> DispatchRecord | None:
        """Claims one dispatch by id, ignoring available_at; None while its thread is busy."""
        check_id("dispatch_id", dispatch_id)
        check_id("consumer_id", consumer_id)
        self._check_lease(lease_ms)
        at = self._now(now)
        token = uuid.uuid4().hex

        def body(uow: UnitOfWork) -> DispatchRecord | None:
            dispatch = uow.dispatch(dispatch_id)
            mailbox = uow.mailbox(dispatch.record.thread_id, at)
            if dispatch.record.status is DispatchStatus.QUEUED and mailbox.record.claimed is not None:
                return None
            return self._grant(uow, mailbox, dispatch, consumer_id, token, lease_ms, at)

        params = {"dispatch_id": dispatch_id, "consumer_id": consumer_id, "lease_ms": lease_ms}
        return self._execute("claim_dispatch", params, body, _OPTIONAL_DISPATCH, idempotency_key)

    @staticmethod
    def _grant(
        uow: UnitOfWork,
        mailbox: ThreadMailbox,
        dispatch: Dispatch,
        consumer_id: str,
        token: str,
        lease_ms: int,
        at: int,
    ) -> DispatchRecord:
        dispatch.claim(consumer_id=consumer_id, claim_token=token, lease_until=at + lease_ms, now=at)
        mailbox.grant_claim(dispatch_id=dispatch.dispatch_id, now=at)
        return dispatch.record

    def claim_next(
        self,
        *,
        consumer_id: str,
        lease_ms: int = policies.DEFAULT_LEASE_MS,
        limit: int = 1,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> list[DispatchRecord]:
        """Claims up to ``limit`` of the best ready dispatches across threads, at most one per
        thread, in one transaction. Reads the dispatch index (written with the events, so it
        never lags), then confirms each pick against the thread mailbox."""
        check_id("consumer_id", consumer_id)
        self._check_lease(lease_ms)
        check_int("limit", limit, low=1, high=policies.MAX_BATCH_LIMIT)
        at = self._now(now)

        def body(uow: UnitOfWork) -> list[DispatchRecord]:
            threads = [row.thread_id for row in self.tables.ready_threads(at, limit + 16)]
            if uow.attempt > 0 and len(threads) > limit:
                # After a conflict, spread racing workers over the candidates instead of
                # all retrying the same best one (no livelock: one of them always wins).
                offset = random.randrange(len(threads))
                threads = threads[offset:] + threads[:offset]
            claimed: list[DispatchRecord] = []
            for thread_id in threads:
                if len(claimed) == limit:
                    break
                mailbox = uow.find_mailbox(thread_id)
                best = mailbox.best_ready(at) if mailbox is not None else None
                if mailbox is None or best is None:
                    continue
                token = uuid.uuid4().hex
                claimed.append(self._grant(uow, mailbox, uow.dispatch(best), consumer_id, token, lease_ms, at))
            return claimed

        params = {"consumer_id": consumer_id, "lease_ms": lease_ms, "limit": limit}
        return self._execute("claim_next", params, body, _DISPATCHES, idempotency_key)

    def extend_lease(
        self,
        dispatch_id: str,
        *,
        claim_token: str,
        lease_ms: int = policies.DEFAULT_LEASE_MS,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> bool:
        """Extends the lease to now + lease_ms; False if the token does not own the dispatch."""
        check_id("dispatch_id", dispatch_id)
        check_id("claim_token", claim_token)
        self._check_lease(lease_ms)
        at = self._now(now)

        def body(uow: UnitOfWork) -> bool:
            dispatch = uow.dispatch(dispatch_id)
            if not dispatch.owns(claim_token):
                return False
            if self._fence(uow, dispatch, "extend_lease", at):
                return False
            dispatch.extend_lease(claim_token=claim_token, lease_until=at + lease_ms, now=at)
            return True

        params = {"dispatch_id": dispatch_id, "claim_token": claim_token, "lease_ms": lease_ms}
        return self._execute("extend_lease", params, body, _BOOL, idempotency_key)

    def record_start(
        self,
        dispatch_id: str,
        *,
        claim_token: str,
        instance_id: str | None = None,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> DispatchRecord:
        """Records that the runtime started the claimed dispatch; the run becomes running."""
        check_id("dispatch_id", dispatch_id)
        check_id("claim_token", claim_token)
        check_optional_id("instance_id", instance_id)
        at = self._now(now)

        def body(uow: UnitOfWork) -> DispatchRecord:
            dispatch = uow.dispatch(dispatch_id)
            if self._owner_fenced(uow, dispatch, claim_token, "record_start", at):
                return dispatch.record
            attempt = dispatch.record.attempt_count + 1
            dispatch.record_start(
                claim_token=claim_token, instance_id=instance_id or f"{dispatch_id}/{attempt}", now=at
            )
            uow.run(dispatch.record.run_id).start(dispatch_id=dispatch_id, now=at)
            return dispatch.record

        params = {"dispatch_id": dispatch_id, "claim_token": claim_token, "instance_id": instance_id}
        return self._execute("record_start", params, body, _DISPATCH, idempotency_key)

    def ack(
        self,
        dispatch_id: str,
        *,
        claim_token: str,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> DispatchRecord:
        """Delivery done: the dispatch is acked and the run, unless waiting, ends naturally."""
        check_id("dispatch_id", dispatch_id)
        check_id("claim_token", claim_token)
        at = self._now(now)

        def body(uow: UnitOfWork) -> DispatchRecord:
            dispatch = uow.dispatch(dispatch_id)
            if self._owner_fenced(uow, dispatch, claim_token, "ack", at):
                return dispatch.record
            dispatch.ack(claim_token=claim_token, now=at)
            uow.mailbox(dispatch.record.thread_id, at).release_claim(dispatch_id=dispatch_id, requeue_at=None, now=at)
            run = uow.run(dispatch.record.run_id)
            if run.record.status is not RunStatus.WAITING:
                run.finish_if_open(termination=TerminationReason.natural_end(), dispatch_id=dispatch_id, now=at)
            return dispatch.record

        params = {"dispatch_id": dispatch_id, "claim_token": claim_token}
        return self._execute("ack", params, body, _DISPATCH, idempotency_key)

    def nack(
        self,
        dispatch_id: str,
        *,
        claim_token: str,
        error: str,
        retry_at: int | None = None,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> DispatchRecord:
        """A transient failure: requeue with backoff, or dead-letter once attempts run out."""
        check_id("dispatch_id", dispatch_id)
        check_id("claim_token", claim_token)
        check_text("error", error)
        if retry_at is not None:
            check_millis("retry_at", retry_at)
        at = self._now(now)

        def body(uow: UnitOfWork) -> DispatchRecord:
            dispatch = uow.dispatch(dispatch_id)
            if self._owner_fenced(uow, dispatch, claim_token, "nack", at):
                return dispatch.record
            requeued = dispatch.nack(claim_token=claim_token, error=error, now=at, retry_at=retry_at)
            record = dispatch.record
            uow.mailbox(record.thread_id, at).release_claim(
                dispatch_id=dispatch_id, requeue_at=record.available_at if requeued else None, now=at
            )
            if not requeued:
                uow.run(record.run_id).finish_if_open(
                    termination=TerminationReason.error(error), dispatch_id=dispatch_id, now=at, error=error
                )
            return record

        params = {"dispatch_id": dispatch_id, "claim_token": claim_token, "error": error, "retry_at": retry_at}
        return self._execute("nack", params, body, _DISPATCH, idempotency_key)

    def dead_letter(
        self,
        dispatch_id: str,
        *,
        claim_token: str,
        error: str,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> DispatchRecord:
        """A permanent failure: the dispatch is dead-lettered and the run errors (RunErrored)."""
        check_id("dispatch_id", dispatch_id)
        check_id("claim_token", claim_token)
        check_text("error", error)
        at = self._now(now)

        def body(uow: UnitOfWork) -> DispatchRecord:
            dispatch = uow.dispatch(dispatch_id)
            if self._owner_fenced(uow, dispatch, claim_token, "dead_letter", at):
                return dispatch.record
            attempt_count = dispatch.record.attempt_count
            dispatch.dead_letter(claim_token=claim_token, error=error, now=at)
            uow.mailbox(dispatch.record.thread_id, at).release_claim(dispatch_id=dispatch_id, requeue_at=None, now=at)
            run = uow.run(dispatch.record.run_id)
            if not run.record.is_done:
                run.error(message=error, dispatch_id=dispatch_id, attempt_count=attempt_count, now=at)
            return dispatch.record

        params = {"dispatch_id": dispatch_id, "claim_token": claim_token, "error": error}
        return self._execute("dead_letter", params, body, _DISPATCH, idempotency_key)

    def cancel(self, dispatch_id: str, *, now: int | None = None, idempotency_key: str | None = None) -> DispatchRecord:
        """Cancels a queued dispatch; its run ends cancelled. A claimed one is refused."""
        check_id("dispatch_id", dispatch_id)
        at = self._now(now)

        def body(uow: UnitOfWork) -> DispatchRecord:
            dispatch = uow.dispatch(dispatch_id)
            dispatch.cancel(now=at)
            uow.mailbox(dispatch.record.thread_id, at).withdraw(dispatch_id=dispatch_id, now=at)
            uow.run(dispatch.record.run_id).finish_if_open(
                termination=TerminationReason.cancelled(), dispatch_id=dispatch_id, now=at
            )
            return dispatch.record

        return self._execute("cancel", {"dispatch_id": dispatch_id}, body, _DISPATCH, idempotency_key)

    def interrupt(
        self, thread_id: str, *, now: int | None = None, idempotency_key: str | None = None
    ) -> InterruptResult:
        """Advances the thread's epoch: every queued dispatch is superseded, the claimed one
        is interrupted and fenced on its owner's next write."""
        check_id("thread_id", thread_id)
        at = self._now(now)

        def body(uow: UnitOfWork) -> InterruptResult:
            mailbox = uow.mailbox(thread_id, at)
            old_epoch = mailbox.epoch
            new_epoch, superseded_ids, active_id = mailbox.advance_epoch(now=at)
            superseded = []
            for dispatch_id in superseded_ids:
                dispatch = uow.dispatch(dispatch_id)
                dispatch.supersede(reason=SUPERSEDED_BY_INTERRUPT, now=at)
                uow.run(dispatch.record.run_id).finish_if_open(
                    termination=TerminationReason.cancelled(), dispatch_id=dispatch_id, now=at
                )
                superseded.append(dispatch.record)
            active = None
            if active_id is not None:
                active_dispatch = uow.dispatch(active_id)
                if active_dispatch.record.dispatch_epoch == old_epoch:
                    # Already-interrupted claims are not interrupted twice (spec Z11).
                    active_dispatch.interrupt(new_epoch=new_epoch, now=at)
                active = active_dispatch.record
            return InterruptResult(
                thread_id=thread_id, new_dispatch_epoch=new_epoch, superseded=superseded, active_dispatch=active
            )

        return self._execute("interrupt", {"thread_id": thread_id}, body, _INTERRUPT, idempotency_key)

    def reclaim_expired_leases(
        self,
        *,
        limit: int = policies.DEFAULT_RECLAIM_LIMIT,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> list[DispatchRecord]:
        """Requeues (or dead-letters) dispatches whose lease ran out, in one transaction."""
        check_int("limit", limit, low=1, high=policies.MAX_BATCH_LIMIT)
        at = self._now(now)

        def body(uow: UnitOfWork) -> list[DispatchRecord]:
            reclaimed = []
            for row in self.tables.expired_claims(at, limit):
                dispatch = uow.dispatch(row.dispatch_id)
                if not dispatch.record.lease_expired(at):
                    continue  # the index row was read before a concurrent write; re-checked here
                mailbox = uow.mailbox(dispatch.record.thread_id, at)
                if dispatch.record.dispatch_epoch < mailbox.epoch:
                    self._supersede_claimed(uow, dispatch, mailbox, FENCED_AT["reclaim"], at)
                    continue
                requeued = dispatch.expire_lease(now=at)
                record = dispatch.record
                mailbox.release_claim(
                    dispatch_id=record.dispatch_id, requeue_at=record.available_at if requeued else None, now=at
                )
                if not requeued:
                    uow.run(record.run_id).finish_if_open(
                        termination=TerminationReason.error(record.last_error or ""),
                        dispatch_id=record.dispatch_id,
                        now=at,
                        error=record.last_error,
                    )
                reclaimed.append(record)
            return reclaimed

        return self._execute("reclaim_expired_leases", {"limit": limit}, body, _DISPATCHES, idempotency_key)

    # ------------------------------------------------------------------ epoch fence

    def _fence(self, uow: UnitOfWork, dispatch: Dispatch, command: str, at: int) -> bool:
        """Supersedes the claimed dispatch if an interrupt advanced its thread's epoch."""
        mailbox = uow.mailbox(dispatch.record.thread_id, at)
        if dispatch.record.dispatch_epoch >= mailbox.epoch:
            return False
        self._supersede_claimed(uow, dispatch, mailbox, FENCED_AT[command], at)
        return True

    def _owner_fenced(self, uow: UnitOfWork, dispatch: Dispatch, token: str, command: str, at: int) -> bool:
        """True when the owner's command is refused by the fence (saved, then raised)."""
        if not dispatch.owns(token):
            return False  # the domain method refuses with the precise error
        if not self._fence(uow, dispatch, command, at):
            return False
        uow.commit_then_raise(DispatchSuperseded(dispatch.dispatch_id, FENCED_AT[command]))
        return True

    @staticmethod
    def _supersede_claimed(uow: UnitOfWork, dispatch: Dispatch, mailbox: ThreadMailbox, reason: str, at: int) -> None:
        dispatch.supersede(reason=reason, now=at)
        mailbox.release_claim(dispatch_id=dispatch.dispatch_id, requeue_at=None, now=at)
        uow.run(dispatch.record.run_id).finish_if_open(
            termination=TerminationReason.cancelled(), dispatch_id=dispatch.dispatch_id, now=at
        )

    @staticmethod
    def _check_lease(lease_ms: int) -> None:
        check_int("lease_ms", lease_ms, low=policies.MIN_LEASE_MS, high=policies.MAX_LEASE_MS)
