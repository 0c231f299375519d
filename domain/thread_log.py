"""The committed message log of a thread.

Each message is an aggregate of its own (id from thread and message id), created by its
``MessageCommitted`` event: a reused message id collides in the store, and no command ever
loads message bodies. ``ThreadLog`` keeps only the count and the last id, so appending to a
thread of any length reads a few small events (it is snapshotted).
"""

from __future__ import annotations

from typing import Any, ClassVar
from uuid import UUID

from pydantic import JsonValue

from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.ids import NAMESPACE, uuid5
from run_mailbox.domain.messages import Message
from run_mailbox.domain.model import Created, MailboxAggregate
from run_mailbox.domain.values import Millis, Value


def thread_log_id(thread_id: str) -> UUID:
    return uuid5(NAMESPACE, f"log:{thread_id}")


def message_aggregate_id(thread_id: str, message_id: str) -> UUID:
    return uuid5(NAMESPACE, f"message:{thread_id}:{message_id}")


class ThreadLogRecord(Value):
    thread_id: str
    message_count: int = 0
    last_message_id: str | None = None
    updated_at: Millis


class CommittedMessage(Value):
    thread_id: str
    run_id: str
    message_id: str
    message_seq: int
    role: str
    visibility: str
    content_blocks: list[JsonValue]
    message_kind: str
    parent_message_id: str | None
    created_at: Millis


class ThreadMessage(MailboxAggregate[CommittedMessage]):
    TOPIC = "ThreadMessage"  # its stable stored name (docs/events.md)
    record_type = CommittedMessage

    class MessageCommitted(Created):
        TOPIC = "ThreadMessage.MessageCommitted"
        upstream: ClassVar[bool] = True
        message: CommittedMessage
        now: int

        def apply(self, aggregate: Any) -> None:
            aggregate.record = self.message

    def __init__(self) -> None:
        pass

    @classmethod
    def commit(cls, message: CommittedMessage, now: int) -> ThreadMessage:
        return cls._create_at(
            cls.MessageCommitted,
            id=message_aggregate_id(message.thread_id, message.message_id),
            message=message,
            now=now,
        )


class ThreadLog(MailboxAggregate[ThreadLogRecord]):
    TOPIC = "ThreadLog"  # its stable stored name (docs/events.md)
    record_type = ThreadLogRecord

    class ThreadLogOpened(Created):
        TOPIC = "ThreadLog.ThreadLogOpened"
        thread_id: str
        now: int

        def apply(self, aggregate: Any) -> None:
            aggregate.record = ThreadLogRecord(thread_id=self.thread_id, updated_at=self.now)

    class MessagesAppended(MailboxAggregate.Event):
        TOPIC = "ThreadLog.MessagesAppended"
        run_id: str
        first: int
        last: int
        last_message_id: str
        now: int

        def next_record(self, record: Any) -> Any:
            return record.model_copy(
                update={"message_count": self.last, "last_message_id": self.last_message_id, "updated_at": self.now}
            )

    def __init__(self) -> None:
        pass

    @classmethod
    def open_for(cls, *, thread_id: str, now: int) -> ThreadLog:
        return cls._create_at(cls.ThreadLogOpened, id=thread_log_id(thread_id), thread_id=thread_id, now=now)

    def append(self, *, run_id: str, messages: list[Message], now: int) -> list[ThreadMessage]:
        """Appends the messages at the next seqs; returns the new message aggregates."""
        if not messages:
            raise InvalidArgument("messages", messages, "must hold at least one message")
        ids = [m.message_id for m in messages]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("messages", ids, "message_id values must be unique")
        first = self.record.message_count + 1
        parent = self.record.last_message_id
        committed = []
        for offset, message in enumerate(messages):
            record = CommittedMessage(
                thread_id=self.record.thread_id,
                run_id=run_id,
                message_id=message.message_id,
                message_seq=first + offset,
                role=message.role,
                visibility=message.visibility,
                content_blocks=message.content_json(),
                message_kind=message.kind,
                parent_message_id=parent,
                created_at=now if message.created_at is None else message.created_at,
            )
            committed.append(ThreadMessage.commit(record, now))
            parent = message.message_id
        self.trigger_event(
            self.MessagesAppended,
            run_id=run_id,
            first=first,
            last=first + len(messages) - 1,
            last_message_id=parent,
            now=now,
        )
        return committed
