"""The Run aggregate: one agent run on a thread, across all the dispatches that drive it."""

from __future__ import annotations

from typing import Any, ClassVar

from domain.errors import InvalidTransition
from domain.ids import run_aggregate_id
from domain.model import MailboxAggregate
from domain.values import Millis, RunStatus, TerminationReason, Value

# Allowed moves (spec payloads section 6); a move to the same status is allowed.
_MOVES: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.CREATED: frozenset({RunStatus.CREATED, RunStatus.RUNNING, RunStatus.DONE}),
    RunStatus.RUNNING: frozenset({RunStatus.RUNNING, RunStatus.WAITING, RunStatus.DONE}),
    RunStatus.WAITING: frozenset({RunStatus.WAITING, RunStatus.RUNNING, RunStatus.DONE}),
    RunStatus.DONE: frozenset(),
}


class RunRecord(Value):
    run_id: str
    thread_id: str
    agent_id: str
    status: RunStatus = RunStatus.CREATED
    dispatch_id: str | None = None
    termination: TerminationReason | None = None
    error: str | None = None
    created_at: Millis
    updated_at: Millis
    started_at: Millis | None = None
    finished_at: Millis | None = None

    @property
    def is_done(self) -> bool:
        return self.status is RunStatus.DONE


class Run(MailboxAggregate[RunRecord]):
    record_type = RunRecord

    class Event(MailboxAggregate.Event):
        """Every run event names its run and thread, so it can be read on its own."""

        run_id: str
        thread_id: str
        now: int

    class RunCreated(Event, MailboxAggregate.Created):
        agent_id: str
        dispatch_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.record = RunRecord(
                run_id=self.run_id,
                thread_id=self.thread_id,
                agent_id=self.agent_id,
                dispatch_id=self.dispatch_id,
                created_at=self.now,
                updated_at=self.now,
            )

    class RunStarted(Event):
        dispatch_id: str

        def next_record(self, record: Any) -> Any:
            return record.model_copy(
                update={
                    "status": RunStatus.RUNNING,
                    "dispatch_id": self.dispatch_id,
                    "started_at": record.started_at if record.started_at is not None else self.now,
                    "updated_at": self.now,
                }
            )

    class RunFinished(Event):
        """The run is done for a reason the mailbox decided (ack, cancel, supersede, exhaustion)."""

        dispatch_id: str | None
        termination: TerminationReason
        error: str | None = None

        def next_record(self, record: Any) -> Any:
            return _finished(record, self.termination, self.error, self.now)

    class RunErrored(Event):
        """The host reported a permanent failure; payload is the upstream RunFinish shape."""

        upstream: ClassVar[bool] = True
        dispatch_id: str | None
        attempt_count: int
        message: str

        def next_record(self, record: Any) -> Any:
            return _finished(record, TerminationReason.error(self.message), self.message, self.now)

    def __init__(self) -> None:
        pass

    @classmethod
    def create(cls, *, run_id: str, thread_id: str, agent_id: str, dispatch_id: str, now: int) -> Run:
        return cls._create_at(
            cls.RunCreated,
            id=run_aggregate_id(run_id),
            run_id=run_id,
            thread_id=thread_id,
            agent_id=agent_id,
            dispatch_id=dispatch_id,
            now=now,
        )

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def _raise(self, event_class: Any, **facts: Any) -> None:
        self.trigger_event(event_class, run_id=self.record.run_id, thread_id=self.record.thread_id, **facts)

    def _require_move(self, target: RunStatus, action: str) -> None:
        if target not in _MOVES[self.record.status]:
            raise InvalidTransition(f"cannot {action} run {self.run_id}: it is {self.record.status.value}")

    def start(self, *, dispatch_id: str, now: int) -> None:
        """Marks the run running for this dispatch; a no-op when it already is."""
        self._require_move(RunStatus.RUNNING, "start")
        if self.record.status is RunStatus.RUNNING and self.record.dispatch_id == dispatch_id:
            return
        self._raise(self.RunStarted, dispatch_id=dispatch_id, now=now)

    def finish(
        self, *, termination: TerminationReason, dispatch_id: str | None, now: int, error: str | None = None
    ) -> None:
        self._require_move(RunStatus.DONE, "finish")
        self._raise(self.RunFinished, dispatch_id=dispatch_id, termination=termination, error=error, now=now)

    def finish_if_open(
        self, *, termination: TerminationReason, dispatch_id: str | None, now: int, error: str | None = None
    ) -> bool:
        """Finishes the run unless it is already done; True when an event was raised."""
        if self.record.is_done:
            return False
        self.finish(termination=termination, dispatch_id=dispatch_id, now=now, error=error)
        return True

    def error(self, *, message: str, dispatch_id: str | None, attempt_count: int, now: int) -> None:
        self._require_move(RunStatus.DONE, "fail")
        self._raise(
            self.RunErrored,
            dispatch_id=dispatch_id,
            attempt_count=attempt_count,
            message=message,
            now=now,
        )


def _finished(record: RunRecord, termination: TerminationReason, error: str | None, now: int) -> RunRecord:
    return record.model_copy(
        update={
            "status": RunStatus.DONE,
            "termination": termination,
            "error": error,
            "finished_at": now,
            "updated_at": now,
        }
    )
