"""The mailbox's commands: one frozen pydantic model each, carrying its arguments, their checks,
its idempotency digest and its documentation. ``MailboxService`` exposes each as a method of the
same name (``Submit`` as ``submit``) and runs it in one transaction."""

from run_mailbox.domain.commands.base import Command, command_model
from run_mailbox.domain.commands.batches import AckItem, AckMany, SubmitMany
from run_mailbox.domain.commands.claiming import Claim, ClaimDispatch, ClaimNext, ExtendLease, ReclaimExpiredLeases
from run_mailbox.domain.commands.dispatching import Cancel, Interrupt, Submit
from run_mailbox.domain.commands.messages import CommitMessages, RepairCheckpoint
from run_mailbox.domain.commands.outcomes import Ack, DeadLetter, Nack, RecordStart
from run_mailbox.domain.commands.permissions import Decide, FinishRun, Suspend

__all__ = [
    "Ack",
    "AckItem",
    "AckMany",
    "Cancel",
    "Claim",
    "ClaimDispatch",
    "ClaimNext",
    "Command",
    "CommitMessages",
    "DeadLetter",
    "Decide",
    "ExtendLease",
    "FinishRun",
    "Interrupt",
    "Nack",
    "ReclaimExpiredLeases",
    "RecordStart",
    "RepairCheckpoint",
    "Submit",
    "SubmitMany",
    "Suspend",
    "command_model",
]
