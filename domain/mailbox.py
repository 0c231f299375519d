"""The per-thread mailbox: the scheduling state that must change atomically per thread.

It holds the thread's dispatch epoch and its open (queued or claimed) dispatches. Every
command that changes which dispatch may run next writes this aggregate, so optimistic
concurrency on it serialises them: two claims on one thread cannot both succeed, and an
interrupt supersedes exactly the dispatches that were queued when it committed.
"""

from __future__ import annotations

from typing import Any

from run_mailbox.domain.errors import DedupeKeyConflict, DuplicateDispatch, InvalidTransition
from run_mailbox.domain.ids import mailbox_aggregate_id
from run_mailbox.domain.model import Created, MailboxAggregate
from run_mailbox.domain.values import Millis, Value


class OpenDispatch(Value):
    priority: int
    created_at: Millis
    available_at: Millis
    dedupe_key: str | None = None
    claimed: bool = False

    def order(self, dispatch_id: str) -> tuple[int, int, str]:
        return (self.priority, self.created_at, dispatch_id)


class MailboxRecord(Value):
    thread_id: str
    epoch: int = 0
    open: dict[str, OpenDispatch] = {}
    dispatch_count: int = 0
    created_at: Millis
    updated_at: Millis

    @property
    def claimed(self) -> str | None:
        return next((d for d, entry in self.open.items() if entry.claimed), None)

    def queued_ids(self) -> list[str]:
        """Queued dispatches in claim order: priority, then age."""
        queued = [(e.order(d), d) for d, e in self.open.items() if not e.claimed]
        return [d for _, d in sorted(queued)]

    def dedupe_holder(self, key: str) -> str | None:
        return next((d for d, e in self.open.items() if e.dedupe_key == key), None)


class Admission(Value):
    """A dispatch to admit to a mailbox, with its place in the thread's queue."""

    dispatch_id: str
    entry: OpenDispatch

    @classmethod
    def of(
        cls, dispatch_id: str, *, priority: int, created_at: int, available_at: int, dedupe_key: str | None = None
    ) -> Admission:
        entry = OpenDispatch(priority=priority, created_at=created_at, available_at=available_at, dedupe_key=dedupe_key)
        return cls(dispatch_id=dispatch_id, entry=entry)


def _without(open_: dict[str, OpenDispatch], *ids: str) -> dict[str, OpenDispatch]:
    return {d: e for d, e in open_.items() if d not in ids}


class ThreadMailbox(MailboxAggregate[MailboxRecord]):
    TOPIC = "ThreadMailbox"  # its stable stored name (docs/events.md)
    record_type = MailboxRecord

    class MailboxOpened(Created):
        """The thread's mailbox opened, with the dispatch that opened it (None in logs before version 3)."""

        TOPIC = "ThreadMailbox.MailboxOpened"
        class_version = 3
        thread_id: str
        now: int
        admitted: Admission | None = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            """Version 3 admits the first dispatch in the opening event; before, a DispatchAdmitted followed."""
            state["admitted"] = None

        def apply(self, aggregate: Any) -> None:
            first = self.admitted
            aggregate.record = MailboxRecord(
                thread_id=self.thread_id,
                open={} if first is None else {first.dispatch_id: first.entry},
                dispatch_count=0 if first is None else 1,
                created_at=self.now,
                updated_at=self.now,
            )

    class DispatchAdmitted(MailboxAggregate.Event):
        TOPIC = "ThreadMailbox.DispatchAdmitted"
        dispatch_id: str
        entry: OpenDispatch
        now: int

        def next_record(self, record: Any) -> Any:
            return record.model_copy(
                update={
                    "open": {**record.open, self.dispatch_id: self.entry},
                    "dispatch_count": record.dispatch_count + 1,
                    "updated_at": self.now,
                }
            )

    class ClaimGranted(MailboxAggregate.Event):
        TOPIC = "ThreadMailbox.ClaimGranted"
        dispatch_id: str
        now: int

        def next_record(self, record: Any) -> Any:
            entry = record.open[self.dispatch_id].model_copy(update={"claimed": True})
            return record.model_copy(update={"open": {**record.open, self.dispatch_id: entry}, "updated_at": self.now})

    class ClaimReleased(MailboxAggregate.Event):
        """The claimed dispatch left Claimed: requeued at ``requeue_at``, or closed if None."""

        TOPIC = "ThreadMailbox.ClaimReleased"

        dispatch_id: str
        requeue_at: int | None
        now: int

        def next_record(self, record: Any) -> Any:
            if self.requeue_at is None:
                open_ = _without(record.open, self.dispatch_id)
            else:
                entry = record.open[self.dispatch_id].model_copy(
                    update={"claimed": False, "available_at": self.requeue_at}
                )
                open_ = {**record.open, self.dispatch_id: entry}
            return record.model_copy(update={"open": open_, "updated_at": self.now})

    class DispatchWithdrawn(MailboxAggregate.Event):
        """A queued dispatch was cancelled."""

        TOPIC = "ThreadMailbox.DispatchWithdrawn"

        dispatch_id: str
        now: int

        def next_record(self, record: Any) -> Any:
            return record.model_copy(update={"open": _without(record.open, self.dispatch_id), "updated_at": self.now})

    class EpochAdvanced(MailboxAggregate.Event):
        """An interrupt: queued dispatches superseded, the claimed one fenced lazily."""

        TOPIC = "ThreadMailbox.EpochAdvanced"

        new_epoch: int
        superseded: list[str]
        active_dispatch_id: str | None
        now: int

        def next_record(self, record: Any) -> Any:
            return record.model_copy(
                update={
                    "epoch": self.new_epoch,
                    "open": _without(record.open, *self.superseded),
                    "updated_at": self.now,
                }
            )

    def __init__(self) -> None:
        pass

    @classmethod
    def open_for(cls, *, thread_id: str, now: int) -> ThreadMailbox:
        return cls._create_at(cls.MailboxOpened, id=mailbox_aggregate_id(thread_id), thread_id=thread_id, now=now)

    @classmethod
    def open_admitting(cls, *, thread_id: str, admission: Admission, now: int) -> ThreadMailbox:
        """The thread's new mailbox with its first dispatch admitted: one event, where ``open_for`` and
        ``admit`` make two."""
        return cls._create_at(
            cls.MailboxOpened, id=mailbox_aggregate_id(thread_id), thread_id=thread_id, now=now, admitted=admission
        )

    @property
    def thread_id(self) -> str:
        return self.record.thread_id

    @property
    def epoch(self) -> int:
        return self.record.epoch

    # ------------------------------------------------------------------ queries

    def best_ready(self, now: int) -> str | None:
        """The dispatch a thread claim would take now, or None (busy, empty or not yet due)."""
        if self.record.claimed is not None:
            return None
        ready = [(e.order(d), d) for d, e in self.record.open.items() if e.available_at <= now]
        return min(ready)[1] if ready else None

    # ------------------------------------------------------------------ transitions

    def admit(self, admission: Admission, *, now: int) -> None:
        dispatch_id, dedupe_key = admission.dispatch_id, admission.entry.dedupe_key
        if dispatch_id in self.record.open:
            raise DuplicateDispatch(dispatch_id)
        if dedupe_key is not None:
            holder = self.record.dedupe_holder(dedupe_key)
            if holder is not None:
                raise DedupeKeyConflict(self.thread_id, dedupe_key, holder)
        self.trigger_event(self.DispatchAdmitted, dispatch_id=dispatch_id, entry=admission.entry, now=now)

    def grant_claim(self, *, dispatch_id: str, now: int) -> None:
        holder = self.record.claimed
        if holder is not None:
            raise InvalidTransition(
                f"thread {self.thread_id} already has claimed dispatch {holder}; cannot claim {dispatch_id}"
            )
        if dispatch_id not in self.record.open:
            raise InvalidTransition(f"dispatch {dispatch_id} is not queued on thread {self.thread_id}")
        self.trigger_event(self.ClaimGranted, dispatch_id=dispatch_id, now=now)

    def release_claim(self, *, dispatch_id: str, requeue_at: int | None, now: int) -> None:
        if self.record.claimed != dispatch_id:
            raise InvalidTransition(f"dispatch {dispatch_id} does not hold the claim on thread {self.thread_id}")
        self.trigger_event(self.ClaimReleased, dispatch_id=dispatch_id, requeue_at=requeue_at, now=now)

    def withdraw(self, *, dispatch_id: str, now: int) -> None:
        entry = self.record.open.get(dispatch_id)
        if entry is None or entry.claimed:
            raise InvalidTransition(f"dispatch {dispatch_id} is not queued on thread {self.thread_id}")
        self.trigger_event(self.DispatchWithdrawn, dispatch_id=dispatch_id, now=now)

    def advance_epoch(self, *, now: int) -> tuple[int, list[str], str | None]:
        """Bumps the epoch; returns (new epoch, superseded queued ids, active claimed id)."""
        superseded = self.record.queued_ids()
        active = self.record.claimed
        new_epoch = self.record.epoch + 1
        self.trigger_event(
            self.EpochAdvanced,
            new_epoch=new_epoch,
            superseded=superseded,
            active_dispatch_id=active,
            now=now,
        )
        return new_epoch, superseded, active
