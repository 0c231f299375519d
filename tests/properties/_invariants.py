"""Invariants that hold after every command, checked against the model and the service.

The per-record checks read the model's mirror (refreshed from the live records of whatever
the last command wrote); the mailbox and thread-log checks read the service for the threads
the last command touched; ``everything_agrees`` re-reads every record (end of an example).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from run_mailbox.domain.ids import mailbox_aggregate_id
from run_mailbox.domain.thread_log import message_aggregate_id, thread_log_id
from run_mailbox.domain.values import DispatchStatus
from tests.properties._model import THREADS, Model
from tests.properties._oracle import RUN_FINISHED_FIRST

CLAIMED, QUEUED, SUPERSEDED = DispatchStatus.CLAIMED, DispatchStatus.QUEUED, DispatchStatus.SUPERSEDED


# The spec's words for the statuses, written out here: the oracle does not take them from the code.
DISPATCH_STATUS_TEXT = {"queued", "claimed", "acked", "cancelled", "superseded", "dead_letter"}
TERMINAL_TEXT = {"acked", "cancelled", "superseded", "dead_letter"}


def _near(*times: int | None) -> set[int]:
    return {t + d for t in times if t is not None for d in (-1, 0, 1)}


def record_predicates_agree(m: Model, now: int) -> None:
    """A record's own answers (lease expired, ready, terminal, queue order) agree with the spec's
    rules at and next to every boundary: a lease is owned at ``lease_until`` itself and expires
    one millisecond later (C74); a dispatch is ready from ``available_at`` on."""
    for d in m.dispatches.values():
        assert d.status.value in DISPATCH_STATUS_TEXT, d.status
        assert d.is_terminal == (d.status.value in TERMINAL_TEXT), d
        assert d.queue_order() == (d.priority, d.created_at, d.dispatch_id), d
        for t in _near(now, d.lease_until, d.available_at):
            expired = d.status.value == "claimed" and d.lease_until is not None and d.lease_until < t
            assert d.lease_expired(t) == expired, f"lease_expired({t}) is {not expired} for {d}"
            ready = d.status.value == "queued" and d.available_at <= t
            assert d.is_ready(t) == ready, f"is_ready({t}) is {not ready} for {d}"


def mailboxes_offer_the_best_ready(service: Any, m: Model, now: int, threads: Iterable[str]) -> None:
    """Now, and at and next to every queued dispatch's ``available_at``, each thread mailbox
    offers the model's best ready dispatch."""
    for thread in sorted(set(threads) & {d.thread_id for d in m.dispatches.values()}):
        mailbox = service.repository.get(mailbox_aggregate_id(thread))
        for t in sorted(_near(now, *(d.available_at for d in m.queued_on(thread)))):
            best = m.best_ready(thread, t)
            got = mailbox.best_ready(t)
            assert got == (best.dispatch_id if best else None), f"thread {thread} at {t}: mailbox offers {got}"


def at_most_one_claimed_dispatch_per_thread(m: Model) -> None:
    for thread in THREADS:
        claimed = [d.dispatch_id for d in m.on_thread(thread) if d.status is CLAIMED]
        assert len(claimed) <= 1, f"thread {thread} has {len(claimed)} claimed dispatches: {claimed} (Z7)"


def records_have_the_shape_of_their_status(m: Model) -> None:
    for d in m.dispatches.values():
        claim = (d.claim_token, d.claimed_by, d.lease_until)
        if d.status is CLAIMED:
            assert None not in claim, f"claimed dispatch without token, owner or lease: {d}"
        else:
            assert claim == (None, None, None), f"{d.status.value} dispatch keeps claim fields: {d}"
        if d.status is QUEUED:
            assert (d.instance_id, d.run_status, d.completed_at) == (None, None, None), d
        assert d.attempt_count <= d.max_attempts, f"attempt_count above max_attempts: {d}"


def terminal_records_never_change(m: Model) -> None:
    for dispatch_id, frozen in m.frozen.items():
        assert m.dispatches[dispatch_id] == frozen, f"terminal dispatch {dispatch_id} changed"


def superseded_dispatches_are_behind_their_thread_epoch(m: Model) -> None:
    """An interrupt (or its lazy fence) supersedes only dispatches of an older epoch; the one other
    way to be superseded is finish_run ending the run of a queued dispatch (its reason says so)."""
    for d in m.dispatches.values():
        if d.status is SUPERSEDED and d.last_error != RUN_FINISHED_FIRST:
            epoch = m.epoch_of(d.thread_id)
            assert d.dispatch_epoch < epoch, f"superseded at epoch {d.dispatch_epoch}, thread epoch {epoch}: {d}"


def runs_point_at_their_own_dispatches(m: Model) -> None:
    for run in m.runs.values():
        d = m.dispatches.get(run.dispatch_id or "")
        assert d is not None and d.run_id == run.run_id, f"run {run.run_id} names dispatch {run.dispatch_id}"


def checkpoints_tile_each_thread(m: Model) -> None:
    """Per thread, the runs' checkpoint ranges are contiguous from 1, never overlap, and end
    at the thread's committed message count (Z1, Z2)."""
    for thread in THREADS:
        spans = sorted((s.first, s.last, r.run_id) for r in m.runs_on(thread) for s in r.checkpoints)
        following = 1
        for first, last, run_id in spans:
            assert first == following, f"thread {thread}: range {first}-{last} of {run_id} should start at {following}"
            following = last + 1
        assert following - 1 == m.committed[thread], f"thread {thread} checkpointed to {following - 1}"
        for first, last, run_id in spans:
            owners = {m.messages[k].run_id for k in m.messages if k[0] == thread and first <= m.messages[k].seq <= last}
            assert owners == {run_id}, f"thread {thread}: seqs {first}-{last} committed by {owners}, not {run_id}"


def decisions_are_recorded_once_as_delivered(m: Model) -> None:
    recorded = set()
    for run in m.runs.values():
        ids = [d.resume.decision_id for d in run.decisions]
        assert len(set(ids)) == len(ids), f"run {run.run_id} holds a decision twice: {ids}"
        for decision in run.decisions:
            key = (run.run_id, decision.resume.decision_id)
            recorded.add(key)
            assert m.decisions.get(key) == (decision.tool_call_id, decision.resume), f"unexpected decision {key}"
    assert recorded == set(m.decisions), f"accepted decisions missing: {set(m.decisions) - recorded}"


def dispatch_index_agrees(service: Any, m: Model) -> None:
    rows = {row.dispatch_id: row for row in service.tables.all_dispatches()}
    assert set(rows) == set(m.dispatches), f"index rows {sorted(rows)} vs dispatches {sorted(m.dispatches)}"
    for dispatch_id, row in rows.items():
        d = m.dispatches[dispatch_id]
        got = (row.status, row.priority, row.available_at, row.lease_until, row.thread_id, row.updated_at)
        want = (d.status.value, d.priority, d.available_at, d.lease_until, d.thread_id, d.updated_at)
        assert got == want, f"index row of {dispatch_id} is {got}, the aggregate says {want}"


def mailboxes_agree(service: Any, m: Model, threads: Iterable[str]) -> None:
    """A thread mailbox holds exactly the thread's open dispatches, with the model's epoch."""
    for thread in threads:
        mailbox = service.get_mailbox(thread)
        assert mailbox is not None, f"thread {thread} has no mailbox"
        assert mailbox.epoch == m.epoch_of(thread), f"thread {thread} epoch {mailbox.epoch}, model {m.epoch_of(thread)}"
        open_ = {d.dispatch_id: d for d in m.open_on(thread)}
        assert set(mailbox.open) == set(open_), f"thread {thread} mailbox holds {sorted(mailbox.open)}"
        for dispatch_id, entry in mailbox.open.items():
            d = open_[dispatch_id]
            want = (d.priority, d.created_at, d.available_at, d.dedupe_key, d.status is CLAIMED)
            got = (entry.priority, entry.created_at, entry.available_at, entry.dedupe_key, entry.claimed)
            assert got == want, f"{dispatch_id}: mailbox {entry}, record {d}"
        ever = len(m.on_thread(thread))
        assert mailbox.dispatch_count == ever, f"thread {thread}: mailbox counts {mailbox.dispatch_count}, not {ever}"


def thread_logs_agree(service: Any, m: Model, threads: Iterable[str]) -> None:
    for thread in threads:
        if m.committed[thread]:
            log = service.repository.get(thread_log_id(thread)).record
            assert log.message_count == m.committed[thread], f"thread {thread} log holds {log.message_count}"


# Spec payloads section 8: the canonical message_kind of a role and visibility.
MESSAGE_KIND = {
    ("user", "all"): "user_input",
    ("user", "internal"): "internal_user_input",
    ("assistant", "all"): "assistant_output",
    ("assistant", "internal"): "assistant_output",
    ("tool", "all"): "tool_result",
    ("tool", "internal"): "tool_result",
    ("system", "all"): "system",
    ("system", "internal"): "internal_system",
}


def new_messages_are_stored_as_committed(service: Any, m: Model) -> None:
    """Each message the last command committed is stored whole: its seq, its parent (the thread's
    message before it), its role, visibility, content, kind and time."""
    for thread, message, now in m.new_messages:
        stored = m.messages[(thread, message["message_id"])]
        before = [mid for (t, mid), s in m.messages.items() if t == thread and s.seq == stored.seq - 1]
        got = service.repository.get(message_aggregate_id(thread, message["message_id"])).record
        want = {
            "thread_id": thread, "run_id": stored.run_id, "message_id": message["message_id"],
            "message_seq": stored.seq, "role": message["role"], "visibility": message["visibility"],
            "content_blocks": message["content"],
            "message_kind": MESSAGE_KIND[(message["role"], message["visibility"])],
            "parent_message_id": before[0] if before else None, "created_at": now,
        }  # fmt: skip
        assert got.model_dump(mode="json") == want, f"message {message['message_id']}: stored {got}, expected {want}"


def everything_agrees(service: Any, m: Model) -> None:
    """Every live record equals the model's mirror (end of an example: nothing was missed)."""
    for dispatch_id, record in m.dispatches.items():
        assert service.get_dispatch(dispatch_id) == record, f"dispatch {dispatch_id} differs from the mirror"
    for run_id, run in m.runs.items():
        assert service.get_run(run_id) == run, f"run {run_id} differs from the mirror"
    opened = [t for t in THREADS if service.get_mailbox(t) is not None]
    assert set(opened) >= {d.thread_id for d in m.dispatches.values()}
    mailboxes_agree(service, m, opened)
    thread_logs_agree(service, m, THREADS)
    dispatch_index_agrees(service, m)
