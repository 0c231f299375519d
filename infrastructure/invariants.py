"""Checks every aggregate invariant over the whole store (used by ``mailbox verify``).

Each check returns readable problems; an empty list means the store is consistent. The
aggregates are rebuilt from their events, so this also proves every event still decodes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.reasons import RUN_FINISHED_FIRST
from run_mailbox.domain.run import RunRecord
from run_mailbox.domain.thread_log import thread_log_id
from run_mailbox.domain.values import DispatchStatus
from run_mailbox.infrastructure.persistence.ready_heads import heads_of_index

if TYPE_CHECKING:
    from run_mailbox.infrastructure.service import MailboxService

_INDEXED = ("thread_id", "run_id", "status", "priority", "created_at", "available_at", "lease_until", "updated_at")


def _dispatches(service: MailboxService) -> tuple[dict[str, DispatchRecord], list[str]]:
    problems = []
    records = {}
    for row in service.tables.all_dispatches():
        record = service.get_dispatch(row.dispatch_id)
        records[row.dispatch_id] = record
        for field in _INDEXED:
            stored = getattr(record, field)
            stored = stored.value if isinstance(stored, DispatchStatus) else stored
            if getattr(row, field) != stored:
                problems.append(
                    f"dispatch {row.dispatch_id}: index {field}={getattr(row, field)!r} but aggregate has {stored!r}"
                )
    return records, problems


def _thread_problems(service: MailboxService, thread_id: str, dispatches: list[DispatchRecord]) -> list[str]:
    problems = []
    mailbox = service.get_mailbox(thread_id)
    if mailbox is None:
        return [f"thread {thread_id}: has dispatches but no mailbox"]
    claimed = [d.dispatch_id for d in dispatches if d.status is DispatchStatus.CLAIMED]
    if len(claimed) > 1:
        problems.append(f"thread {thread_id}: {len(claimed)} claimed dispatches {claimed}")
    open_ids = {d.dispatch_id for d in dispatches if not d.is_terminal}
    if set(mailbox.open) != open_ids:
        mailbox_open = sorted(mailbox.open)
        problems.append(f"thread {thread_id}: mailbox open {mailbox_open} != open dispatches {sorted(open_ids)}")
    if mailbox.claimed != (claimed[0] if claimed else None):
        problems.append(f"thread {thread_id}: mailbox claim {mailbox.claimed} != claimed dispatch {claimed}")
    for d in dispatches:
        fenced = d.status is DispatchStatus.SUPERSEDED and d.last_error != RUN_FINISHED_FIRST
        if fenced and d.dispatch_epoch >= mailbox.epoch:  # an interrupt supersedes only older epochs
            problems.append(f"dispatch {d.dispatch_id}: superseded at epoch {d.dispatch_epoch} >= {mailbox.epoch}")
        if d.dispatch_epoch > mailbox.epoch:
            problems.append(f"dispatch {d.dispatch_id}: epoch {d.dispatch_epoch} ahead of its thread's")
    return problems


def _checkpoint_problems(service: MailboxService, thread_id: str, runs: list[RunRecord]) -> list[str]:
    spans = sorted((r.first, r.last, run.run_id) for run in runs for r in run.checkpoints)
    expected = 1
    problems = []
    for first, last, run_id in spans:
        if first != expected:
            kind = "overlap" if first < expected else "gap"
            problems.append(f"thread {thread_id}: checkpoint {kind} at seq {first} (run {run_id}), expected {expected}")
        expected = max(expected, last + 1)
    log = service.repository.get(thread_log_id(thread_id)) if spans else None
    count = log.record.message_count if log is not None else 0
    if spans and count != expected - 1:
        problems.append(f"thread {thread_id}: {count} messages committed but checkpoints end at {expected - 1}")
    return problems


def _head_problems(service: MailboxService) -> list[str]:
    """The ready heads must be what the dispatch index implies (one per idle thread with queued work)."""
    expected = {h.thread_id: h for h in heads_of_index(service.tables.all_dispatches())}
    found = {h.thread_id: h for h in service.tables.ready_heads()}
    return [
        f"thread {thread}: ready head {found.get(thread)} but the index implies {expected.get(thread)}"
        for thread in sorted(set(expected) | set(found))
        if expected.get(thread) != found.get(thread)
    ]


def check_invariants(service: MailboxService) -> list[str]:
    records, problems = _dispatches(service)
    problems += _head_problems(service)
    by_thread: dict[str, list[DispatchRecord]] = defaultdict(list)
    for record in records.values():
        by_thread[record.thread_id].append(record)
    runs: dict[str, RunRecord] = {}
    for record in records.values():
        if record.run_id not in runs:
            runs[record.run_id] = service.get_run(record.run_id)
    runs_by_thread: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs.values():
        runs_by_thread[run.thread_id].append(run)
    for thread_id, dispatches in sorted(by_thread.items()):
        problems += _thread_problems(service, thread_id, dispatches)
        problems += _checkpoint_problems(service, thread_id, runs_by_thread[thread_id])
    decisions = Counter(d.resume.decision_id for run in runs.values() for d in run.decisions)
    problems += [f"decision {d} recorded {n} times" for d, n in sorted(decisions.items()) if n > 1]
    return problems
