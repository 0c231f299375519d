"""Repairs from the log alone: missing checkpoint ranges, and the dispatch index.

Checkpoint repair re-derives, from the log alone, the checkpoint ranges a host must have seen.

Every committed message must lie in one ThreadMessagesCheckpointed range of the run that
committed it. Messages and their checkpoint commit in one transaction here, so nothing is ever
missing and nothing is written; were a range missing, it would be recorded once, under the run
that committed those messages (never under later runs, unlike upstream's Z1).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any
from uuid import UUID

from run_mailbox.domain.commands import Command, RepairCheckpoint
from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.event_names import topics_of
from run_mailbox.domain.results import CheckpointResult, RepairReport
from run_mailbox.domain.run_events import ThreadMessagesCheckpointed
from run_mailbox.domain.thread_log import ThreadMessage
from run_mailbox.infrastructure.persistence.rows import DispatchIndexRow

PAGE = 1_000


def repair_checkpoints(recorder: Any, mapper: Any, execute: Callable[[Command[Any]], Any]) -> RepairReport:
    committed: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
    covered: dict[tuple[str, str], set[int]] = defaultdict(set)
    ranges = 0
    topics = topics_of(ThreadMessage.MessageCommitted, ThreadMessagesCheckpointed)
    position = 0
    while True:
        page = recorder.select_notifications(start=position, limit=PAGE, topics=topics, inclusive_of_start=False)
        if not page:
            break
        for notification in page:
            event = mapper.to_domain_event(notification)
            if isinstance(event, ThreadMessage.MessageCommitted):
                message = event.message
                committed[(message.thread_id, message.run_id)][message.message_seq] = message.message_id
            else:
                ranges += 1
                span = range(event.message_seq_start, event.message_seq_end + 1)
                covered[(event.thread_id, event.run_id)].update(span)
        position = page[-1].id
    repaired: list[CheckpointResult] = []
    for (thread_id, run_id), seqs in sorted(committed.items()):
        missing = {seq: message_id for seq, message_id in seqs.items() if seq not in covered[(thread_id, run_id)]}
        if missing:
            repaired += execute(RepairCheckpoint(thread_id, run_id, missing))
    return RepairReport(
        threads_checked=len({thread for thread, _ in committed}),
        runs_checked=len(committed),
        messages_checked=sum(len(s) for s in committed.values()),
        ranges_checked=ranges,
        repaired_ranges=repaired,
    )


def rebuild_dispatch_index(recorder: Any, mapper: Any, unsnapshotted: Any, tables: Any) -> int:
    """Rewrites the dispatch index from the log: one row per dispatch, from its folded events.

    The index is written with the events in normal operation; this is for a log restored or
    copied without its side tables. Returns the number of dispatches indexed."""
    ids: set[UUID] = set()
    position = 0
    topics = topics_of(Dispatch.RunQueued)
    while page := recorder.select_notifications(start=position, limit=PAGE, topics=topics, inclusive_of_start=False):
        ids.update(n.originator_id for n in page)
        position = page[-1].id
    rows = [DispatchIndexRow.of(unsnapshotted.get(aggregate_id).record) for aggregate_id in ids]
    tables.replace_dispatch_index(rows)
    return len(rows)
