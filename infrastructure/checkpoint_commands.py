"""Checkpoint commands: append a run's messages to its thread, and verify the checkpoints."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from eventsourcing.utils import get_topic
from pydantic import TypeAdapter

from run_mailbox.domain.errors import DuplicateMessage, InvalidArgument, SeqConflict
from run_mailbox.domain.messages import Message
from run_mailbox.domain.run import Run
from run_mailbox.domain.thread_log import CommittedMessage, ThreadMessage
from run_mailbox.domain.values import check_id, check_int
from run_mailbox.infrastructure.command_base import CommandBase
from run_mailbox.infrastructure.results import CheckpointResult, RepairReport
from run_mailbox.infrastructure.unit_of_work import UnitOfWork

MAX_MESSAGES_PER_COMMIT = 1_000
_RESULT = TypeAdapter(CheckpointResult)
_PAGE = 1_000


def _parse_messages(messages: Any) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise InvalidArgument("messages", messages, "must be a non-empty list of messages")
    if len(messages) > MAX_MESSAGES_PER_COMMIT:
        raise InvalidArgument(
            "messages", f"<{len(messages)} messages>", f"at most {MAX_MESSAGES_PER_COMMIT} per commit"
        )
    parsed = []
    for item in messages:
        try:
            message = item if isinstance(item, Message) else Message.model_validate(item)
        except ValueError as exc:
            raise InvalidArgument("messages", item, str(exc).splitlines()[0]) from None
        check_id("messages.message_id", message.message_id)
        parsed.append(message)
    return parsed


def _same(stored: CommittedMessage, message: Message, run_id: str) -> bool:
    return (
        stored.run_id == run_id
        and stored.role == message.role
        and stored.visibility == message.visibility
        and stored.content_blocks == message.content_json()
        and (message.created_at is None or stored.created_at == message.created_at)
    )


class CheckpointCommands(CommandBase):
    def commit_messages(
        self,
        thread_id: str,
        run_id: str,
        messages: list[Message] | list[dict[str, Any]],
        *,
        expected_first_seq: int | None = None,
        now: int | None = None,
        idempotency_key: str | None = None,
    ) -> CheckpointResult:
        """Appends the run's new messages at the thread's next seqs: one MessageCommitted per
        message and one ThreadMessagesCheckpointed for the range, in one transaction.
        Committing the same messages for the same run again is a no-op."""
        check_id("thread_id", thread_id)
        check_id("run_id", run_id)
        parsed = _parse_messages(messages)
        if expected_first_seq is not None:
            check_int("expected_first_seq", expected_first_seq, low=1, high=2**62)
        at = self._now(now)

        def body(uow: UnitOfWork) -> CheckpointResult:
            run = uow.run(run_id)
            if run.record.thread_id != thread_id:
                raise InvalidArgument("thread_id", thread_id, f"run {run_id} belongs to thread {run.record.thread_id}")
            again = self._committed_before(uow, thread_id, run_id, parsed)
            if again is not None:
                return again
            log = uow.thread_log(thread_id, at)
            first = log.record.message_count + 1
            if expected_first_seq is not None and expected_first_seq != first:
                raise SeqConflict(thread_id, expected_first_seq, first)
            for message in log.append(run_id=run_id, messages=parsed, now=at):
                uow.add(message)
            ids = [m.message_id for m in parsed]
            run.checkpoint(first=first, message_ids=ids, now=at)
            uow.save_last(run)
            return CheckpointResult(
                thread_id=thread_id,
                run_id=run_id,
                message_seq_start=first,
                message_seq_end=first + len(ids) - 1,
                message_ids=ids,
            )

        params = {
            "thread_id": thread_id,
            "run_id": run_id,
            "messages": parsed,
            "expected_first_seq": expected_first_seq,
        }
        return self._execute("commit_messages", params, body, _RESULT, idempotency_key)

    @staticmethod
    def _committed_before(
        uow: UnitOfWork, thread_id: str, run_id: str, messages: list[Message]
    ) -> CheckpointResult | None:
        """The earlier checkpoint when exactly these messages were committed by this run.

        The first try looks up only the first id (a new commit is the common case); a retry
        after a store conflict looks up every id, since one of them collided.
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

    def repair_checkpoints(self) -> RepairReport:
        """Re-derives, from the log alone, the checkpoint events a host must have seen.

        Every committed message must lie in one ThreadMessagesCheckpointed range of the run
        that committed it. Messages and their checkpoint commit in one transaction here, so
        nothing is ever missing and nothing is written; were a range missing, it would be
        recorded once, under the run that committed those messages (never under later runs,
        unlike upstream's Z1).
        """
        committed: dict[tuple[str, str], dict[int, str]] = defaultdict(dict)
        covered: dict[tuple[str, str], set[int]] = defaultdict(set)
        ranges = 0
        topics = [get_topic(ThreadMessage.MessageCommitted), get_topic(Run.ThreadMessagesCheckpointed)]
        position = 0
        while True:
            page = self.recorder.select_notifications(
                start=position, limit=_PAGE, topics=topics, inclusive_of_start=False
            )
            if not page:
                break
            for notification in page:
                event = self.mapper.to_domain_event(notification)
                if isinstance(event, ThreadMessage.MessageCommitted):
                    message = event.message
                    committed[(message.thread_id, message.run_id)][message.message_seq] = message.message_id
                else:
                    ranges += 1
                    span = range(event.message_seq_start, event.message_seq_end + 1)
                    covered[(event.thread_id, event.run_id)].update(span)
            position = page[-1].id
        repaired = [
            self._checkpoint_missing(thread_id, run_id, seqs, covered[(thread_id, run_id)])
            for (thread_id, run_id), seqs in sorted(committed.items())
            if set(seqs) - covered[(thread_id, run_id)]
        ]
        return RepairReport(
            threads_checked=len({thread for thread, _ in committed}),
            runs_checked=len(committed),
            messages_checked=sum(len(s) for s in committed.values()),
            ranges_checked=ranges,
            repaired_ranges=[r for group in repaired for r in group],
        )

    def _checkpoint_missing(
        self, thread_id: str, run_id: str, seqs: dict[int, str], covered: set[int]
    ) -> list[CheckpointResult]:
        missing = sorted(set(seqs) - covered)
        spans: list[list[int]] = []
        for seq in missing:
            if spans and spans[-1][-1] == seq - 1:
                spans[-1].append(seq)
            else:
                spans.append([seq])
        at = self._now(None)

        def body(uow: UnitOfWork) -> list[CheckpointResult]:
            run = uow.run(run_id)
            done = {s for r in run.record.checkpoints for s in range(r.first, r.last + 1)}
            results = []
            for span in spans:
                if done.intersection(span):
                    continue  # a concurrent repair recorded it
                ids = [seqs[s] for s in span]
                run.checkpoint(first=span[0], message_ids=ids, now=at)
                results.append(
                    CheckpointResult(
                        thread_id=thread_id,
                        run_id=run_id,
                        message_seq_start=span[0],
                        message_seq_end=span[-1],
                        message_ids=ids,
                    )
                )
            return results

        return self._execute("repair_checkpoints", {"run_id": run_id}, body, TypeAdapter(list[CheckpointResult]), None)
