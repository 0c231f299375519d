"""What a handler may raise or return to tell the worker how its attempt ended.

A handler (sync or async) takes a :class:`~run_mailbox.worker.job.Job` (``job.Handler``) and:

- returns ``None`` or a list of messages: the messages are committed to the run's thread, then the
  dispatch is acked (the run ends ``natural_end`` unless the handler finished it otherwise);
- returns or raises :class:`NeedsPermission`: its messages are committed, then the run is suspended
  with its tickets (the dispatch is acked, the run waits for the decisions; the last one queues a
  resume dispatch, which a worker claims like any other);
- raises :class:`PermanentError` (or one of the worker's ``permanent_errors``): dead-lettered;
- raises :class:`LeaseLost` or ``DispatchSuperseded``: nothing more is written (someone else owns
  the dispatch now, or an interrupt ended the run);
- raises anything else: nacked, retried after the mailbox's backoff (dead-lettered once the
  attempts run out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from run_mailbox.domain.messages import Message
from run_mailbox.domain.permissions import ToolTicket


class PermanentError(Exception):
    """Raised by a handler when retrying cannot help: the dispatch is dead-lettered and the run
    errors (``RunErrored``) with this error's text."""


class NeedsPermission(Exception):
    """Raised or returned by a handler whose run wants to call tools a human must approve first.

    The worker commits ``messages`` (what the run said while asking, if anything), then suspends
    the run with ``tickets``: the dispatch is acked and the run waits; ``decide`` delivers each
    decision and the last one queues the run's resume, which a worker then claims (the handler
    sees the decisions on ``job.get_run().decisions``)."""

    def __init__(
        self, tickets: Iterable[ToolTicket | Mapping[str, Any]], messages: Iterable[Message | Mapping[str, Any]] = ()
    ) -> None:
        self.tickets = [t if isinstance(t, ToolTicket) else ToolTicket.model_validate(t) for t in tickets]
        self.messages = [m if isinstance(m, Message) else Message.model_validate(m) for m in messages]
        if not self.tickets:
            raise ValueError("NeedsPermission needs at least one ticket")
        super().__init__(f"{len(self.tickets)} tool call(s) need permission")


class LeaseLost(Exception):
    """The attempt no longer owns its dispatch: the lease was lost (an interrupt fenced it, or it
    expired and was reclaimed) or the worker released it at shutdown. Raised by the job's
    ``check()`` and ``commit_messages()``; a handler that lets it through writes nothing more."""


Result: TypeAlias = Sequence[Message] | NeedsPermission | None
"""What a handler returns: nothing, the messages to commit before the ack, or a request for permission."""
