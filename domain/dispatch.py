"""The Dispatch aggregate: one delivery-attempt series of a run (its record: ``dispatch_record``).

Every event carries the dispatch record as it is after the transition, so each event
describes the stored state on its own (spec Z3) and a reader never needs the history to
render it. The event's type and its own fields (a reason, an error) state the fact.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.errors import ClaimTokenMismatch, InvalidTransition
from run_mailbox.domain.ids import dispatch_aggregate_id
from run_mailbox.domain.model import Created, MailboxAggregate, drop_originator
from run_mailbox.domain.policies import backoff_delay_ms
from run_mailbox.domain.reasons import LEASE_EXHAUSTED
from run_mailbox.domain.values import DispatchStatus, RunStatus, check_millis

QUEUED = DispatchStatus.QUEUED
CLAIMED = DispatchStatus.CLAIMED


_CLEARED_CLAIM: dict[str, Any] = {"claim_token": None, "claimed_by": None, "lease_until": None}
_CLEARED_RUNTIME: dict[str, Any] = {"instance_id": None, "run_status": None}


class Dispatch(MailboxAggregate[DispatchRecord]):
    TOPIC = "Dispatch"  # its stable stored name (docs/events.md)
    record_type = DispatchRecord

    class Event(MailboxAggregate.Event):
        dispatch: DispatchRecord

        def next_record(self, record: Any) -> Any:
            return self.dispatch

    class RunQueued(Event, Created):
        TOPIC = "Dispatch.RunQueued"
        upstream: ClassVar[bool] = True

        def apply(self, aggregate: Any) -> None:
            aggregate.record = self.dispatch

    class DispatchClaimed(Event):
        TOPIC = "Dispatch.DispatchClaimed"

    class LeaseExtended(Event):
        TOPIC = "Dispatch.LeaseExtended"

    class RunSubmitted(Event):
        TOPIC = "Dispatch.RunSubmitted"
        upstream: ClassVar[bool] = True

    class DispatchAcked(Event):
        TOPIC = "Dispatch.DispatchAcked"

    class RunRescheduled(Event):
        TOPIC = "Dispatch.RunRescheduled"
        upstream: ClassVar[bool] = True
        reason: Literal["retry_backoff", "expired_lease_reclaimed"]

    class DispatchDeadLettered(Event):
        TOPIC = "Dispatch.DispatchDeadLettered"
        class_version = 3
        reason: Literal["attempts_exhausted", "lease_expired", "permanent_failure"]
        """Why: out of attempts after a nack, the lease expired on the last attempt, or a permanent failure."""

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            """Version 1 called the reason ``cause``; every other dispatch event says ``reason``."""
            state["reason"] = state.pop("cause")

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            """The originator's id and version are left to the stored row."""
            drop_originator(state)

    class RunCancelled(Event):
        TOPIC = "Dispatch.RunCancelled"
        upstream: ClassVar[bool] = True

    class RunSuperseded(Event):
        TOPIC = "Dispatch.RunSuperseded"
        reason: str

    class RunInterrupted(Event):
        TOPIC = "Dispatch.RunInterrupted"
        upstream: ClassVar[bool] = True
        new_epoch: int

    def __init__(self) -> None:
        pass

    # ------------------------------------------------------------------ creation

    @classmethod
    def enqueue(
        cls,
        *,
        dispatch_id: str,
        thread_id: str,
        run_id: str,
        priority: int,
        dedupe_key: str | None,
        max_attempts: int,
        epoch: int,
        available_at: int,
        now: int,
    ) -> Dispatch:
        record = DispatchRecord(
            dispatch_id=dispatch_id,
            thread_id=thread_id,
            run_id=run_id,
            priority=priority,
            dedupe_key=dedupe_key,
            dispatch_epoch=epoch,
            available_at=available_at,
            max_attempts=max_attempts,
            created_at=now,
            updated_at=now,
        )
        return cls._create_at(cls.RunQueued, id=dispatch_aggregate_id(dispatch_id), dispatch=record)

    @property
    def dispatch_id(self) -> str:
        return self.record.dispatch_id

    # ------------------------------------------------------------------ guards

    def _require(self, status: DispatchStatus, action: str) -> None:
        if self.record.status is not status:
            raise InvalidTransition(
                f"cannot {action} dispatch {self.dispatch_id}: it is {self.record.status.value}, "
                f"must be {status.value.capitalize()}"
            )

    def _require_owner(self, claim_token: str, action: str) -> None:
        self._require(CLAIMED, action)
        if self.record.claim_token != claim_token:
            raise ClaimTokenMismatch(self.dispatch_id, claim_token)

    def owns(self, claim_token: str) -> bool:
        return self.record.status is CLAIMED and self.record.claim_token == claim_token

    def _next(self, event_class: type[Event], now: int, fields: dict[str, Any], **facts: Any) -> None:
        for name, value in fields.items():  # a last guard: a time past the latest would never read back
            if value is not None and name.endswith(("_at", "_until")):
                check_millis(name, value)
        record = self.record.model_copy(update={**fields, "updated_at": now})
        self.trigger_event(event_class, dispatch=record, **facts)

    # ------------------------------------------------------------------ transitions

    def claim(self, *, consumer_id: str, claim_token: str, lease_until: int, now: int) -> None:
        self._require(QUEUED, "claim")
        self._next(
            self.DispatchClaimed,
            now,
            {"status": CLAIMED, "claim_token": claim_token, "claimed_by": consumer_id, "lease_until": lease_until},
        )

    def extend_lease(self, *, claim_token: str, lease_until: int, now: int) -> None:
        self._require_owner(claim_token, "extend the lease of")
        self._next(self.LeaseExtended, now, {"lease_until": lease_until})

    def record_start(self, *, claim_token: str, instance_id: str, now: int) -> None:
        self._require_owner(claim_token, "record the start of")
        self._next(self.RunSubmitted, now, {"instance_id": instance_id, "run_status": RunStatus.RUNNING})

    def ack(self, *, claim_token: str, now: int) -> None:
        self._require_owner(claim_token, "ack")
        fields = {**_CLEARED_CLAIM, "status": DispatchStatus.ACKED, "completed_at": now}
        if self.record.run_status is RunStatus.RUNNING:
            fields["run_status"] = RunStatus.DONE
        self._next(self.DispatchAcked, now, fields)

    def nack(self, *, claim_token: str, error: str, now: int, retry_at: int | None) -> bool:
        """Returns True when the dispatch was requeued, False when it was dead-lettered."""
        self._require_owner(claim_token, "nack")
        attempts = self.record.attempt_count + 1
        if attempts >= self.record.max_attempts:
            self._dead_letter(now, error, "attempts_exhausted", attempt_count=attempts)
            return False
        available_at = retry_at if retry_at is not None else now + backoff_delay_ms(attempts)
        self._requeue(now, "retry_backoff", error=error, attempt_count=attempts, available_at=available_at)
        return True

    def dead_letter(self, *, claim_token: str, error: str, now: int) -> None:
        self._require_owner(claim_token, "dead-letter")
        self._dead_letter(now, error, "permanent_failure", attempt_count=self.record.attempt_count)

    def expire_lease(self, *, now: int) -> bool:
        """Reclaims an expired lease: True when requeued, False when dead-lettered."""
        self._require(CLAIMED, "reclaim")
        if not self.record.lease_expired(now):
            raise InvalidTransition(
                f"cannot reclaim dispatch {self.dispatch_id}: its lease runs until "
                f"{self.record.lease_until}, now is {now}"
            )
        attempts = self.record.attempt_count + 1
        if attempts >= self.record.max_attempts:
            self._dead_letter(now, LEASE_EXHAUSTED, "lease_expired", attempt_count=attempts)
            return False
        self._requeue(
            now,
            "expired_lease_reclaimed",
            error=self.record.last_error,
            attempt_count=attempts,
            available_at=now,
        )
        return True

    def cancel(self, *, now: int) -> None:
        self._require(QUEUED, "cancel")
        self._next(
            self.RunCancelled,
            now,
            {**_CLEARED_CLAIM, "status": DispatchStatus.CANCELLED, "completed_at": now},
        )

    def supersede(self, *, reason: str, now: int) -> None:
        if self.record.is_terminal:
            raise InvalidTransition(
                f"cannot supersede dispatch {self.dispatch_id}: it is {self.record.status.value}, "
                "must be Queued or Claimed"
            )
        fields = {
            **_CLEARED_CLAIM,
            **_CLEARED_RUNTIME,
            "status": DispatchStatus.SUPERSEDED,
            "completed_at": now,
            "last_error": reason,
        }
        self.trigger_event(
            self.RunSuperseded, dispatch=self.record.model_copy(update={**fields, "updated_at": now}), reason=reason
        )

    def interrupt(self, *, new_epoch: int, now: int) -> None:
        """Marks the claimed dispatch as interrupted; its owner is fenced on its next write."""
        self._require(CLAIMED, "interrupt")
        self._next(self.RunInterrupted, now, {}, new_epoch=new_epoch)

    # ------------------------------------------------------------------ helpers

    def _requeue(self, now: int, reason: str, *, error: str | None, attempt_count: int, available_at: int) -> None:
        fields = {
            **_CLEARED_CLAIM,
            **_CLEARED_RUNTIME,
            "status": QUEUED,
            "attempt_count": attempt_count,
            "available_at": available_at,
            "last_error": error,
            "completed_at": None,
        }
        self._next(self.RunRescheduled, now, fields, reason=reason)

    def _dead_letter(self, now: int, error: str, reason: str, *, attempt_count: int) -> None:
        # One rule for every dead letter, however it was reached (spec Z20): claim fields
        # and the runtime projection cleared; last_error, attempt_count and completed_at
        # say what happened. The run's own termination lives on the Run aggregate.
        fields = {
            **_CLEARED_CLAIM,
            **_CLEARED_RUNTIME,
            "status": DispatchStatus.DEAD_LETTER,
            "attempt_count": attempt_count,
            "last_error": error,
            "completed_at": now,
        }
        self._next(self.DispatchDeadLettered, now, fields, reason=reason)


__all__ = ["Dispatch", "DispatchRecord"]
