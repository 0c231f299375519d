"""The run mailbox's pure domain model: values, aggregates, events, policies and errors."""

from domain.dispatch import Dispatch, DispatchRecord
from domain.errors import (
    AlreadyExists,
    ClaimTokenMismatch,
    ConcurrencyConflict,
    DedupeKeyConflict,
    DispatchNotFound,
    DispatchSuperseded,
    DuplicateDispatch,
    DuplicateRun,
    IdempotencyConflict,
    InvalidArgument,
    InvalidTransition,
    MailboxError,
    NotFound,
    RunNotFound,
)
from domain.mailbox import MailboxRecord, ThreadMailbox
from domain.model import DomainEvent
from domain.run import Run, RunRecord
from domain.values import DispatchStatus, RunStatus, TerminationReason

__all__ = [
    "AlreadyExists",
    "ClaimTokenMismatch",
    "ConcurrencyConflict",
    "DedupeKeyConflict",
    "Dispatch",
    "DispatchNotFound",
    "DispatchRecord",
    "DispatchStatus",
    "DispatchSuperseded",
    "DomainEvent",
    "DuplicateDispatch",
    "DuplicateRun",
    "IdempotencyConflict",
    "InvalidArgument",
    "InvalidTransition",
    "MailboxError",
    "MailboxRecord",
    "NotFound",
    "Run",
    "RunNotFound",
    "RunRecord",
    "RunStatus",
    "TerminationReason",
    "ThreadMailbox",
]
