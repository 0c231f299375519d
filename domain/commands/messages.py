"""The message checkpoint command: append a run's new messages to its thread's log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import KW_ONLY
from typing import Annotated, ClassVar

from pydantic import Field, Strict, field_validator

from run_mailbox.domain.commands.base import Command, Id, check_identifier, command_model
from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.limits import Measure, measure_chars, measure_count, measure_json
from run_mailbox.domain.messages import Message
from run_mailbox.domain.results import CheckpointResult

MAX_SEQ = 2**62
Seq = Annotated[int, Strict(), Field(ge=1, le=MAX_SEQ)]


@command_model
class CommitMessages(Command[CheckpointResult]):
    """Appends the run's new messages at the thread's next seqs: one MessageCommitted per message
    and one ThreadMessagesCheckpointed for the range, in one transaction. Committing the same
    messages for the same run again returns the first result and writes nothing.
    ``expected_first_seq`` refuses (SeqConflict) an append that would not start there.
    A message is ``{"message_id", "role", "content": [blocks], "visibility", "created_at"}`` or a
    :class:`Message`."""

    name: ClassVar[str] = "commit_messages"
    result_type: ClassVar[type] = CheckpointResult

    thread_id: Id
    run_id: Id
    messages: list[Message]
    _: KW_ONLY
    expected_first_seq: Seq | None = None

    @field_validator("messages")
    @classmethod
    def _some_messages(cls, messages: list[Message]) -> list[Message]:
        if not messages:
            raise InvalidArgument("messages", messages, "must hold at least one message")
        for i, message in enumerate(messages):
            check_identifier(f"messages[{i}].message_id", message.message_id)
        return messages

    def measure(self) -> Iterator[Measure]:
        yield from super().measure()
        count = len(self.messages)
        yield measure_count("messages", f"<{count} messages>", count, "max_messages_per_commit", "messages")
        total = 0
        for i, message in enumerate(self.messages):
            yield measure_chars(f"messages[{i}].message_id", message.message_id, "max_id_chars")
            measured = measure_json(f"messages[{i}]", message, limit="max_message_bytes", models=True)
            total += measured.size
            yield measured
        yield measure_count("messages", f"<{count} messages>", total, "max_command_bytes", "bytes")


@command_model
class RepairCheckpoint(Command[list[CheckpointResult]]):
    """Records a checkpoint (under the run that committed them) for committed messages of the run
    that no ThreadMessagesCheckpointed range covers; ``missing`` maps each such seq to its
    message id. Issued by ``repair_checkpoints``, which finds them in the log."""

    name: ClassVar[str] = "repair_checkpoint"
    result_type: ClassVar[object] = list[CheckpointResult]

    thread_id: Id
    run_id: Id
    missing: dict[Seq, Id]
