"""run-mailbox: a durable, event-sourced mailbox for AI-agent runs.

Everything a host needs is importable from here; the subpackages are internal.

    from run_mailbox import MailboxService, ToolTicket, ToolCallResume, Message

    mailbox = MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": "mailbox.db"})
    dispatch = mailbox.submit("thread-1", "run-1")
"""

from importlib.metadata import PackageNotFoundError, version

from run_mailbox.domain.commands import (
    Ack,
    AckItem,
    AckMany,
    Cancel,
    Claim,
    ClaimDispatch,
    ClaimNext,
    Command,
    CommitMessages,
    DeadLetter,
    DeadLetterFilter,
    Decide,
    ExtendLease,
    FinishRun,
    Interrupt,
    Nack,
    ReclaimExpiredLeases,
    RecordStart,
    Redrive,
    RedriveMany,
    Submit,
    SubmitMany,
    Suspend,
)
from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.errors import (
    AlreadyExists,
    AlreadyRedriven,
    ClaimTokenMismatch,
    ConcurrencyConflict,
    DecisionConflict,
    DedupeKeyConflict,
    DispatchNotFound,
    DispatchSuperseded,
    DuplicateDispatch,
    DuplicateMessage,
    DuplicateRun,
    IdempotencyConflict,
    InvalidArgument,
    InvalidTransition,
    MailboxError,
    NotFound,
    ResumeFailed,
    RunNotFound,
    SeqConflict,
)
from run_mailbox.domain.limits import Limits
from run_mailbox.domain.mailbox import MailboxRecord, OpenDispatch
from run_mailbox.domain.messages import (
    AudioBlock,
    Base64Source,
    ContentBlock,
    DocumentBlock,
    ImageBlock,
    Message,
    MessageSeqRange,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UrlSource,
    VideoBlock,
)
from run_mailbox.domain.permissions import Decision, DeliveryPath, ToolCallResume, ToolTicket
from run_mailbox.domain.policies import (
    DEFAULT_LEASE_MS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_PRIORITY,
    MAX_PRIORITY,
    backoff_delay_ms,
)
from run_mailbox.domain.results import (
    AckManyResult,
    CheckpointResult,
    DeadLetterEntry,
    DecisionOutcome,
    InterruptResult,
    RedriveManyResult,
    RedriveResult,
    Refusal,
    RepairReport,
)
from run_mailbox.domain.run_record import RunRecord
from run_mailbox.domain.values import DeadLetterReason, DispatchStatus, RunStatus, TerminationReason
from run_mailbox.infrastructure.async_service import AsyncMailboxService
from run_mailbox.infrastructure.instrument import instrument, instrument_views
from run_mailbox.infrastructure.observe import CommandObserver, Observation
from run_mailbox.infrastructure.persistence.mapper import UndecodableEvent
from run_mailbox.infrastructure.persistence.migrations import SchemaTooNew
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.settings import SettingsError, env_from_database_url, resolve_env, sqlite_env
from run_mailbox.infrastructure.views.host import ViewHost
from run_mailbox.infrastructure.views.verify import ViewDiff
from run_mailbox.projections.canonical import CanonicalEvent
from run_mailbox.projections.checkpoint_ranges import CheckpointRangeRow, ThreadCheckpointsRow
from run_mailbox.projections.dispatch_queue import DispatchQueueRow
from run_mailbox.projections.permission_resolutions import PermissionRow
from run_mailbox.projections.run_status import RunStatusRow
from run_mailbox.projections.view import RebuildFailed
from run_mailbox.worker import Job, LeaseLost, NeedsPermission, PermanentError, Worker

try:
    __version__ = version("run-mailbox")
except PackageNotFoundError:  # pragma: no cover (running from a source tree without an install)
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_LEASE_MS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_PRIORITY",
    "MAX_PRIORITY",
    "Ack",
    "AckItem",
    "AckMany",
    "AckManyResult",
    "AlreadyExists",
    "AlreadyRedriven",
    "AsyncMailboxService",
    "AudioBlock",
    "Base64Source",
    "Cancel",
    "CanonicalEvent",
    "CheckpointRangeRow",
    "CheckpointResult",
    "Claim",
    "ClaimDispatch",
    "ClaimNext",
    "ClaimTokenMismatch",
    "Command",
    "CommandObserver",
    "CommitMessages",
    "ConcurrencyConflict",
    "ContentBlock",
    "DeadLetter",
    "DeadLetterEntry",
    "DeadLetterFilter",
    "DeadLetterReason",
    "Decide",
    "Decision",
    "DecisionConflict",
    "DecisionOutcome",
    "DedupeKeyConflict",
    "DeliveryPath",
    "DispatchNotFound",
    "DispatchQueueRow",
    "DispatchRecord",
    "DispatchStatus",
    "DispatchSuperseded",
    "DocumentBlock",
    "DuplicateDispatch",
    "DuplicateMessage",
    "DuplicateRun",
    "ExtendLease",
    "FinishRun",
    "IdempotencyConflict",
    "ImageBlock",
    "Interrupt",
    "InterruptResult",
    "InvalidArgument",
    "InvalidTransition",
    "Job",
    "LeaseLost",
    "Limits",
    "MailboxError",
    "MailboxRecord",
    "MailboxService",
    "Message",
    "MessageSeqRange",
    "Nack",
    "NeedsPermission",
    "NotFound",
    "Observation",
    "OpenDispatch",
    "PermanentError",
    "PermissionRow",
    "RebuildFailed",
    "ReclaimExpiredLeases",
    "RecordStart",
    "Redrive",
    "RedriveMany",
    "RedriveManyResult",
    "RedriveResult",
    "Refusal",
    "RepairReport",
    "ResumeFailed",
    "RunNotFound",
    "RunRecord",
    "RunStatus",
    "RunStatusRow",
    "SchemaTooNew",
    "SeqConflict",
    "SettingsError",
    "Submit",
    "SubmitMany",
    "Suspend",
    "TerminationReason",
    "TextBlock",
    "ThinkingBlock",
    "ThreadCheckpointsRow",
    "ToolCallResume",
    "ToolResultBlock",
    "ToolTicket",
    "ToolUseBlock",
    "UndecodableEvent",
    "UrlSource",
    "VideoBlock",
    "ViewDiff",
    "ViewHost",
    "Worker",
    "__version__",
    "backoff_delay_ms",
    "env_from_database_url",
    "instrument",
    "instrument_views",
    "resolve_env",
    "sqlite_env",
]
