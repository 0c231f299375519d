"""Every field of a dispatch, as stored, and the shape its status implies."""

from __future__ import annotations

from pydantic import model_validator

from run_mailbox.domain.values import DispatchStatus, Millis, RunStatus, Value

QUEUED = DispatchStatus.QUEUED
CLAIMED = DispatchStatus.CLAIMED


class DispatchRecord(Value):
    """Every field of a dispatch (spec A), as stored."""

    dispatch_id: str
    thread_id: str
    run_id: str
    priority: int
    dedupe_key: str | None = None
    dispatch_epoch: int = 0
    status: DispatchStatus = QUEUED
    available_at: Millis
    attempt_count: int = 0
    max_attempts: int
    last_error: str | None = None
    claim_token: str | None = None
    claimed_by: str | None = None
    lease_until: Millis | None = None
    created_at: Millis
    updated_at: Millis
    completed_at: Millis | None = None
    instance_id: str | None = None
    run_status: RunStatus | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DispatchRecord:
        """A stored record must have the shape its status implies (spec A10, A14)."""
        claim = (self.claim_token, self.claimed_by, self.lease_until)
        if self.status is CLAIMED:
            if None in claim:
                raise ValueError("a claimed dispatch needs claim_token, claimed_by and lease_until")
        elif any(v is not None for v in claim):
            raise ValueError(f"a {self.status.value} dispatch has no claim fields")
        if self.status is QUEUED and (self.instance_id is not None or self.run_status is not None):
            raise ValueError("a queued dispatch has no runtime result fields")
        if self.attempt_count > self.max_attempts:
            raise ValueError("attempt_count exceeds max_attempts")
        return self

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def is_ready(self, now: int) -> bool:
        return self.status is QUEUED and self.available_at <= now

    def lease_expired(self, now: int) -> bool:
        """Strict boundary: the lease is still owned at ``lease_until`` itself."""
        return self.status is CLAIMED and self.lease_until is not None and self.lease_until < now

    def queue_order(self) -> tuple[int, int, str]:
        return (self.priority, self.created_at, self.dispatch_id)
