"""Typed errors of the mailbox domain.

Every refusal is a subclass of :class:`MailboxError`; a refused command records nothing
(the one documented exception is the lazy epoch fence, see :class:`DispatchSuperseded`).
"""

from __future__ import annotations

from typing import Any

_MAX_SHOWN = 80


def show(value: Any) -> str:
    """A short, printable rendering of an offending value for error messages."""
    text = repr(value)
    if len(text) > _MAX_SHOWN:
        return f"{text[:_MAX_SHOWN]}... ({len(text)} chars)"
    return text


class MailboxError(Exception):
    """Base of every error the mailbox raises on purpose."""


class InvalidArgument(MailboxError, ValueError):
    """An argument is malformed: names the field and the offending value."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {field}={show(value)}: {reason}")


class NotFound(MailboxError, LookupError):
    """The addressed dispatch, run or thread does not exist."""

    kind = "object"

    def __init__(self, identifier: str) -> None:
        self.identifier = identifier
        super().__init__(f"{self.kind} not found: {show(identifier)}")


class DispatchNotFound(NotFound):
    kind = "dispatch"


class RunNotFound(NotFound):
    kind = "run"


class AlreadyExists(MailboxError):
    """A create-style command collides with something that exists."""


class DuplicateDispatch(AlreadyExists):
    def __init__(self, dispatch_id: str) -> None:
        self.dispatch_id = dispatch_id
        super().__init__(f"already exists: dispatch_id={show(dispatch_id)}")


class DuplicateRun(AlreadyExists):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"already exists: run_id={show(run_id)}")


class DedupeKeyConflict(AlreadyExists):
    def __init__(self, thread_id: str, dedupe_key: str, holder: str) -> None:
        self.thread_id = thread_id
        self.dedupe_key = dedupe_key
        self.holder = holder
        super().__init__(
            f"already exists: dedupe_key={show(dedupe_key)} is held by dispatch {holder} on thread {show(thread_id)}"
        )


class InvalidTransition(MailboxError):
    """The aggregate is not in a state that allows the command."""


class ClaimTokenMismatch(InvalidTransition):
    def __init__(self, dispatch_id: str, claim_token: str) -> None:
        self.dispatch_id = dispatch_id
        super().__init__(f"invalid claim_token={show(claim_token)}: it does not own dispatch {dispatch_id}")


class DispatchSuperseded(InvalidTransition):
    """The owner of a claim wrote after an interrupt advanced the thread's epoch.

    The dispatch is superseded as part of refusing the command: that is the lazy epoch
    fence of the upstream contract, and the supersession is recorded even though the
    owner's command is refused.
    """

    def __init__(self, dispatch_id: str, reason: str) -> None:
        self.dispatch_id = dispatch_id
        self.reason = reason
        super().__init__(f"dispatch {dispatch_id} was superseded: {reason}")


class IdempotencyConflict(MailboxError):
    """The idempotency key was used before for a different command or arguments."""

    def __init__(self, key: str, command: str) -> None:
        self.key = key
        self.command = command
        super().__init__(f"idempotency_key={show(key)} was already used with different arguments (now for {command})")


class ConcurrencyConflict(MailboxError):
    """Optimistic-concurrency conflicts persisted beyond the retry budget."""

    def __init__(self, command: str, attempts: int) -> None:
        self.command = command
        self.attempts = attempts
        super().__init__(f"{command} kept conflicting with concurrent writers after {attempts} attempts")


class DuplicateMessage(AlreadyExists):
    def __init__(self, thread_id: str, message_id: str) -> None:
        self.thread_id = thread_id
        self.message_id = message_id
        super().__init__(
            f"already exists: message_id={show(message_id)} is committed on thread {show(thread_id)} "
            "with other content or by another run"
        )


class SeqConflict(InvalidTransition):
    """The caller expected the append to start at another position (a gap or an overlap)."""

    def __init__(self, thread_id: str, expected_first_seq: int, next_seq: int) -> None:
        self.expected_first_seq = expected_first_seq
        self.next_seq = next_seq
        super().__init__(
            f"invalid expected_first_seq={expected_first_seq}: thread {show(thread_id)} continues at seq {next_seq}"
        )


class DecisionConflict(IdempotencyConflict):
    """A decision id was delivered before with other content (another tool call, action or result)."""

    def __init__(self, decision_id: str) -> None:
        MailboxError.__init__(self, f"decision_id={show(decision_id)} was already delivered with different content")
        self.key = decision_id
        self.command = "decide"


class ResumeFailed(MailboxError):
    """The run could not be resumed: its resume dispatch was refused (MailboxResumeFailed is recorded)."""

    def __init__(self, run_id: str, error: str) -> None:
        self.run_id = run_id
        self.error = error
        super().__init__(f"could not queue the resume of run {run_id}: {error}")


class StoreError(MailboxError):
    """The store did not answer as it should; nothing says the command was refused.

    The command may or may not have been recorded (a lost commit acknowledgement is possible):
    retry it with the same ``idempotency_key`` to get its result exactly once.
    """

    def __init__(self, operation: str, reason: str) -> None:
        self.operation = operation
        self.reason = reason
        super().__init__(f"{operation}: {reason}")


class StoreTimeout(StoreError):
    """A store transaction hit a timeout (lock, statement or idle-in-transaction) and was rolled back
    (an earlier attempt of the same write, retried after a lost connection, may still have committed)."""


class StoreUnavailable(StoreError):
    """The store could not be reached, or kept failing, after the retries."""
