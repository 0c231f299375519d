"""The run mailbox's pure domain model: values, aggregates, events, commands, policies and errors."""

from run_mailbox.domain import event_names  # noqa: F401  (registers the stable stored names first)
from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.errors import (
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
    StoreError,
    StoreTimeout,
    StoreUnavailable,
)
from run_mailbox.domain.mailbox import MailboxRecord, ThreadMailbox
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.run import Run, RunRecord
from run_mailbox.domain.values import DispatchStatus, RunStatus, TerminationReason

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
    "StoreError",
    "StoreTimeout",
    "StoreUnavailable",
    "TerminationReason",
    "ThreadMailbox",
]
