"""The lazy epoch fence: after an interrupt advanced its thread's epoch, a claimed dispatch is
superseded on its owner's next write, and that write is refused (docs/decisions/0004)."""

from __future__ import annotations

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.errors import DispatchSuperseded
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.reasons import FENCED_AT
from run_mailbox.domain.values import TerminationReason
from run_mailbox.infrastructure.unit_of_work import UnitOfWork


def fence(uow: UnitOfWork, dispatch: Dispatch, command: str) -> bool:
    """Supersedes the claimed dispatch if an interrupt advanced its thread's epoch; True if it did."""
    mailbox = uow.mailbox(dispatch.record.thread_id)
    if dispatch.record.dispatch_epoch >= mailbox.epoch:
        return False
    supersede_claimed(uow, dispatch, mailbox, FENCED_AT[command])
    return True


def owner_fenced(uow: UnitOfWork, dispatch: Dispatch, token: str, command: str, *, defer: bool = True) -> bool:
    """True when the owner's command is refused by the fence: the supersession is saved, and then
    (``defer``) the command raises DispatchSuperseded; a batch reports it for the one item instead."""
    if not dispatch.owns(token):
        return False  # the domain method refuses with the precise error
    if not fence(uow, dispatch, command):
        return False
    if defer:
        uow.commit_then_raise(DispatchSuperseded(dispatch.dispatch_id, FENCED_AT[command]))
    return True


def supersede_claimed(uow: UnitOfWork, dispatch: Dispatch, mailbox: ThreadMailbox, reason: str) -> None:
    dispatch.supersede(reason=reason, now=uow.now)
    mailbox.release_claim(dispatch_id=dispatch.dispatch_id, requeue_at=None, now=uow.now)
    uow.run(dispatch.record.run_id).finish_if_open(
        termination=TerminationReason.cancelled(), dispatch_id=dispatch.dispatch_id, now=uow.now
    )
