"""Handlers of claim, claim_dispatch, claim_next, extend_lease and reclaim_expired_leases."""

from __future__ import annotations

import random
import uuid

from run_mailbox.domain.commands import Claim, ClaimDispatch, ClaimNext, ExtendLease, ReclaimExpiredLeases
from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.reasons import FENCED_AT
from run_mailbox.domain.values import DispatchStatus, TerminationReason
from run_mailbox.infrastructure.handlers.fence import fence, supersede_claimed
from run_mailbox.infrastructure.handlers.outcomes import start
from run_mailbox.infrastructure.persistence.rows import ReadyThread
from run_mailbox.infrastructure.unit_of_work import UnitOfWork


def grant(
    uow: UnitOfWork, mailbox: ThreadMailbox, dispatch: Dispatch, consumer_id: str, lease_ms: int, started: bool
) -> DispatchRecord:
    """Claims ``dispatch`` for ``consumer_id`` under a fresh token, and marks its thread busy; records
    its start too when ``started``."""
    at = uow.now
    token = uuid.uuid4().hex
    dispatch.claim(consumer_id=consumer_id, claim_token=token, lease_until=at + lease_ms, now=at)
    mailbox.grant_claim(dispatch_id=dispatch.dispatch_id, now=at)
    return start(uow, dispatch, token, None) if started else dispatch.record


def claim(cmd: Claim, uow: UnitOfWork) -> DispatchRecord | None:
    mailbox = uow.find_mailbox(cmd.thread_id)
    if mailbox is None:
        return None
    best = mailbox.best_ready(uow.now)
    if best is None:
        return None
    return grant(uow, mailbox, uow.dispatch(best), cmd.consumer_id, cmd.lease_ms, cmd.start)


def claim_dispatch(cmd: ClaimDispatch, uow: UnitOfWork) -> DispatchRecord | None:
    dispatch = uow.dispatch(cmd.dispatch_id)
    mailbox = uow.mailbox(dispatch.record.thread_id)
    if dispatch.record.status is DispatchStatus.QUEUED and mailbox.record.claimed is not None:
        return None
    return grant(uow, mailbox, dispatch, cmd.consumer_id, cmd.lease_ms, cmd.start)


SPARE_CANDIDATES = 2
"""Threads read beyond ``limit``, in case a candidate's best dispatch was taken meanwhile. Each one
costs a mailbox read (a cold claim read 17 mailboxes, ~100 events, with 16); a claim that finds
fewer than ``limit`` is retried wider after a conflict anyway."""


def claim_next(cmd: ClaimNext, uow: UnitOfWork) -> list[DispatchRecord]:
    """Reads the ready heads (written with the events, so they never lag) for the candidate
    threads, then takes each one's best due dispatch from its mailbox, best first.

    A first attempt takes the best ``limit``. An attempt after a conflict means other workers are
    claiming at the same time, and they would all retry on the same best candidates: it reads a
    window ``2 * attempt + 2`` batches wide and takes one batch-sized block of it at random, so
    racing workers spread over the queue's head. Nothing starves: every first attempt takes the
    best, but for the threads a concurrent ``claim_next`` of this service holds (``claim_reservations``):
    those it skips, as a row queue's ``SKIP LOCKED`` would, reading as much wider."""
    blocks = 1 if uow.attempt == 0 else min(2 * uow.attempt + 2, 16)
    threads = _candidates(uow, cmd.limit * blocks + SPARE_CANDIDATES, cmd.start)
    candidates = list(dict.fromkeys(t.thread_id for t in threads))
    uow.preload_candidates(threads, runs=cmd.start)  # one read, whatever is not in the cache
    picks: list[tuple[tuple[int, int, str], ThreadMailbox, str]] = []
    for thread_id in candidates:
        mailbox = uow.find_mailbox(thread_id)
        best = mailbox.best_ready(uow.now) if mailbox is not None else None
        if mailbox is not None and best is not None:
            picks.append((mailbox.record.open[best].order(best), mailbox, best))
        elif mailbox is not None:
            uow.unread(mailbox)
    picks.sort(key=lambda pick: pick[0])
    start = cmd.limit * random.randrange(-(-len(picks) // cmd.limit)) if blocks > 1 and picks else 0
    taken = picks[start : start + cmd.limit]
    for _, passed_over, _ in picks[:start] + picks[start + cmd.limit :]:
        uow.unread(passed_over)  # another worker may claim it meanwhile: no reason to fail this claim
    uow.preload_dispatches([best for _, _, best in taken])
    if cmd.start:
        uow.preload_runs([uow.dispatch(best).record.run_id for _, _, best in taken])
    granted = [
        grant(uow, mailbox, uow.dispatch(best), cmd.consumer_id, cmd.lease_ms, cmd.start) for _, mailbox, best in taken
    ]
    uow.unread_spares(threads, {best for _, _, best in taken})
    uow.claims.release(keep={mailbox.record.thread_id for _, mailbox, _ in taken})
    return granted


READS_PAST_RESERVATIONS = 3
"""How often a claim reads wider when concurrent claims of the service hold its candidates."""


def _candidates(uow: UnitOfWork, window: int, runs: bool) -> list[ReadyThread]:
    """The best ``window`` ready threads no concurrent ``claim_next`` of this service holds, now held by
    this claim: read as much wider as they hold, and again if they took more meanwhile."""
    threads: list[ReadyThread] = []
    for _ in range(READS_PAST_RESERVATIONS):
        wanted = window + uow.claims.elsewhere()
        read = uow.tables.ready_threads(uow.now, wanted, runs=runs)
        threads = uow.claims.reserve(read)
        if len(threads) >= window or len(read) < wanted:
            break
    return threads


def extend_lease(cmd: ExtendLease, uow: UnitOfWork) -> bool:
    dispatch = uow.dispatch(cmd.dispatch_id)
    if not dispatch.owns(cmd.claim_token):
        return False
    if fence(uow, dispatch, "extend_lease"):
        return False
    dispatch.extend_lease(claim_token=cmd.claim_token, lease_until=uow.now + cmd.lease_ms, now=uow.now)
    return True


def reclaim_expired_leases(cmd: ReclaimExpiredLeases, uow: UnitOfWork) -> list[DispatchRecord]:
    at = uow.now
    reclaimed = []
    for row in uow.tables.expired_claims(at, cmd.limit):
        dispatch = uow.dispatch(row.dispatch_id)
        if not dispatch.record.lease_expired(at):
            continue  # the index row was read before a concurrent write; re-checked here
        mailbox = uow.mailbox(dispatch.record.thread_id)
        if dispatch.record.dispatch_epoch < mailbox.epoch:
            supersede_claimed(uow, dispatch, mailbox, FENCED_AT["reclaim"])
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
