"""The message checkpoint command: append a run's new messages to its thread's log."""

from __future__ import annotations

from dataclasses import KW_ONLY
from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from run_mailbox.domain.commands.base import Command, Id, check_identifier, command_model
from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.messages import Message
from run_mailbox.domain.results import CheckpointResult

MAX_MESSAGES_PER_COMMIT = 1_000


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
    expected_first_seq: Annotated[int, Field(strict=True, ge=1, le=2**62)] | None = None

    @field_validator("messages")
    @classmethod
    def _some_messages(cls, messages: list[Message]) -> list[Message]:
        if not messages:
            raise InvalidArgument("messages", messages, "must hold at least one message")
        if len(messages) > MAX_MESSAGES_PER_COMMIT:
            raise InvalidArgument(
                "messages", f"<{len(messages)} messages>", f"at most {MAX_MESSAGES_PER_COMMIT} per commit"
            )
        for i, message in enumerate(messages):
            check_identifier(f"messages[{i}].message_id", message.message_id)
        return messages


@command_model
class RepairCheckpoint(Command[list[CheckpointResult]]):
    """Records a checkpoint (under the run that committed them) for committed messages of the run
    that no ThreadMessagesCheckpointed range covers; ``missing`` maps each such seq to its
    message id. Issued by ``repair_checkpoints``, which finds them in the log."""

    name: ClassVar[str] = "repair_checkpoint"
    result_type: ClassVar[object] = list[CheckpointResult]

    thread_id: Id
    run_id: Id
    missing: dict[int, Id]
