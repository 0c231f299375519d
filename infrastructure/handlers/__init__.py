"""One handler per command: a small function over the unit of work that reads aggregates and
calls their methods. The command runner owns the transaction, the retries and idempotency."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from run_mailbox.domain import commands as c
from run_mailbox.infrastructure.handlers import claiming, dispatching, messages, outcomes, permissions
from run_mailbox.infrastructure.unit_of_work import UnitOfWork

Handler = Callable[[Any, UnitOfWork], Any]

HANDLERS: dict[type[c.Command[Any]], Handler] = {
    c.Submit: dispatching.submit,
    c.SubmitMany: dispatching.submit_many,
    c.Cancel: dispatching.cancel,
    c.Interrupt: dispatching.interrupt,
    c.Claim: claiming.claim,
    c.ClaimDispatch: claiming.claim_dispatch,
    c.ClaimNext: claiming.claim_next,
    c.ExtendLease: claiming.extend_lease,
    c.ReclaimExpiredLeases: claiming.reclaim_expired_leases,
    c.RecordStart: outcomes.record_start,
    c.Ack: outcomes.ack,
    c.AckMany: outcomes.ack_many,
    c.Nack: outcomes.nack,
    c.DeadLetter: outcomes.dead_letter,
    c.Suspend: permissions.suspend,
    c.Decide: permissions.decide,
    c.FinishRun: permissions.finish_run,
    c.CommitMessages: messages.commit_messages,
    c.RepairCheckpoint: messages.repair_checkpoint,
}


def handler_for(command_class: type[c.Command[Any]]) -> Handler:
    for cls in command_class.__mro__:  # a subclass of a command is handled as that command
        if cls in HANDLERS:
            return HANDLERS[cls]
    raise TypeError(f"no handler for {command_class.__name__}")
