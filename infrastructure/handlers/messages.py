"""Handlers of commit_messages and repair_checkpoint: a run's messages and their checkpoints."""

from __future__ import annotations

from run_mailbox.domain.commands import CommitMessages, RepairCheckpoint
from run_mailbox.domain.errors import DuplicateMessage, InvalidArgument, SeqConflict
from run_mailbox.domain.messages import Message
from run_mailbox.domain.results import CheckpointResult
from run_mailbox.domain.thread_log import CommittedMessage, ThreadMessage
from run_mailbox.infrastructure.unit_of_work import UnitOfWork


def commit_messages(cmd: CommitMessages, uow: UnitOfWork) -> CheckpointResult:
    run = uow.run(cmd.run_id)
    if run.record.thread_id != cmd.thread_id:
        raise InvalidArgument("thread_id", cmd.thread_id, f"run {cmd.run_id} belongs to thread {run.record.thread_id}")
    again = _committed_before(uow, cmd.thread_id, cmd.run_id, cmd.messages)
    if again is not None:
        return again
    log = uow.thread_log(cmd.thread_id)
    first = log.record.message_count + 1
    if cmd.expected_first_seq is not None and cmd.expected_first_seq != first:
        raise SeqConflict(cmd.thread_id, cmd.expected_first_seq, first)
    for message in log.append(run_id=cmd.run_id, messages=cmd.messages, now=uow.now):
        uow.add(message)
    ids = [m.message_id for m in cmd.messages]
    run.checkpoint(first=first, message_ids=ids, now=uow.now)
    uow.save_last(run)  # MessageCommitted per message, then the range's ThreadMessagesCheckpointed
    return CheckpointResult(
        thread_id=cmd.thread_id,
        run_id=cmd.run_id,
        message_seq_start=first,
        message_seq_end=first + len(ids) - 1,
        message_ids=ids,
    )


def _same(stored: CommittedMessage, message: Message, run_id: str) -> bool:
    return (
        stored.run_id == run_id
        and stored.role == message.role
        and stored.visibility == message.visibility
        and stored.content_blocks == message.content_json()
        and (message.created_at is None or stored.created_at == message.created_at)
    )


def _committed_before(uow: UnitOfWork, thread_id: str, run_id: str, messages: list[Message]) -> CheckpointResult | None:
    """The earlier checkpoint when exactly these messages were committed by this run.

    The first try looks up only the first id (a new commit is the common case); a retry after a
    store conflict looks up every id, since one of them collided.
    """
    probe = messages if uow.attempt > 0 else messages[:1]
    if all(uow.find_message(thread_id, m.message_id) is None for m in probe):
        return None
    stored: list[ThreadMessage | None] = [uow.find_message(thread_id, m.message_id) for m in messages]
    for message, found in zip(messages, stored, strict=True):
        if found is not None and not _same(found.record, message, run_id):
            raise DuplicateMessage(thread_id, message.message_id)
    if None in stored:  # some are new, some were committed before: name one that collides
        collided = next(m for m, found in zip(messages, stored, strict=True) if found is not None)
        raise DuplicateMessage(thread_id, collided.message_id)
    seqs = [m.record.message_seq for m in stored if m is not None]
    if seqs != list(range(seqs[0], seqs[0] + len(seqs))):
        raise DuplicateMessage(thread_id, messages[0].message_id)
    return CheckpointResult(
        thread_id=thread_id,
        run_id=run_id,
        message_seq_start=seqs[0],
        message_seq_end=seqs[-1],
        message_ids=[m.message_id for m in messages],
    )


def repair_checkpoint(cmd: RepairCheckpoint, uow: UnitOfWork) -> list[CheckpointResult]:
    run = uow.run(cmd.run_id)
    if run.record.thread_id != cmd.thread_id:
        raise InvalidArgument("thread_id", cmd.thread_id, f"run {cmd.run_id} belongs to thread {run.record.thread_id}")
    for seq, message_id in sorted(cmd.missing.items()):  # only messages this run committed at these seqs
        found = uow.find_message(cmd.thread_id, message_id)
        if found is None or found.record.message_seq != seq or found.record.run_id != cmd.run_id:
            raise InvalidArgument(
                f"missing[{seq}]", message_id, f"run {cmd.run_id} committed no message with this id at seq {seq}"
            )
    done = {s for r in run.record.checkpoints for s in range(r.first, r.last + 1)}
    results = []
    for span in _spans(sorted(cmd.missing)):
        if done.intersection(span):
            continue  # a concurrent repair recorded it
        ids = [cmd.missing[s] for s in span]
        run.checkpoint(first=span[0], message_ids=ids, now=uow.now)
        results.append(
            CheckpointResult(
                thread_id=cmd.thread_id,
                run_id=cmd.run_id,
                message_seq_start=span[0],
                message_seq_end=span[-1],
                message_ids=ids,
            )
        )
    return results


def _spans(seqs: list[int]) -> list[list[int]]:
    """Sorted seqs as runs of consecutive seqs."""
    spans: list[list[int]] = []
    for seq in seqs:
        if spans and spans[-1][-1] == seq - 1:
            spans[-1].append(seq)
        else:
            spans.append([seq])
    return spans
