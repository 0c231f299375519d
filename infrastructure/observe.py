"""What the command runner tells an observer about each command, and the structured logs.

The :class:`~run_mailbox.infrastructure.command_runner.CommandRunner` runs every command inside
``observer.observe(command)``: an :class:`Observation` that the runner fills in (attempts, an
idempotent replay, the result) and that reports to its observer when the command ends, however it
ends. The default :class:`CommandObserver` only writes structured logs (stdlib ``logging``, logger
``run_mailbox.commands``, fields in ``extra=``) for the events an operator looks for: refusals,
fences, conflict retries, dispatches requeued for a retry, lease expiries and dead letters. A
successful command that is none of these costs one small object and no log call.

OpenTelemetry spans and metrics (``run_mailbox.instrument``, the ``otel`` extra) subclass it.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

from run_mailbox.domain import commands as c
from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.errors import DispatchSuperseded, InvalidArgument, MailboxError
from run_mailbox.domain.values import DispatchStatus

log = logging.getLogger("run_mailbox.commands")
# A library: silent until the host configures logging.
logging.getLogger("run_mailbox").addHandler(logging.NullHandler())

_IDS = ("thread_id", "run_id", "dispatch_id")
_QUIET = (c.Claim, c.ClaimDispatch, c.ClaimNext)  # nothing of theirs is logged on success


class Observation:
    """One command as it runs: the runner sets ``attempts``, ``replayed`` and ``result``; the
    observer reads them (and ``error``, ``seconds``) when the command ends."""

    __slots__ = ("attempts", "command", "error", "extra", "observer", "replayed", "result", "seconds", "started")

    def __init__(self, observer: CommandObserver, command: c.Command[Any]) -> None:
        self.observer = observer
        self.command = command
        self.attempts = 0
        """Transactions attempted (1 unless conflicts with concurrent writers forced a retry)."""
        self.replayed = False
        """True when an idempotency key returned the first result (nothing was written)."""
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = 0.0
        self.seconds = 0.0
        self.extra: Any = None
        """Free for an observer (the OpenTelemetry one keeps its span here)."""

    def __enter__(self) -> Observation:
        self.started = time.perf_counter()
        self.observer.started(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.seconds = time.perf_counter() - self.started
        self.error = exc
        self.observer.finished(self)

    @property
    def outcome(self) -> str:
        """``ok``, ``replayed``, ``refused`` (a MailboxError), ``fenced`` (DispatchSuperseded) or ``failed``."""
        if self.error is None:
            return "replayed" if self.replayed else "ok"
        if isinstance(self.error, DispatchSuperseded):
            return "fenced"
        return "refused" if isinstance(self.error, MailboxError) else "failed"

    def ids(self) -> dict[str, str]:
        """thread_id, run_id and dispatch_id, where the command or its result names them."""
        found: dict[str, str] = {}
        for source in (self.command, self.result):
            for name in _IDS:
                value = getattr(source, name, None)
                if isinstance(value, str) and name not in found:
                    found[name] = value
        if isinstance(self.error, DispatchSuperseded):
            found.setdefault("dispatch_id", self.error.dispatch_id)
        return found

    def dispatches(self) -> list[DispatchRecord]:
        """The dispatch records the command returned (none, one, or a list)."""
        if isinstance(self.result, DispatchRecord):
            return [self.result]
        if isinstance(self.result, list):
            return [r for r in self.result if isinstance(r, DispatchRecord)]
        return []

    def effects(self) -> list[tuple[str, str, DispatchRecord]]:
        """What the command did that operators count, one entry per dispatch: ``("claim", "",
        record)``, ``("retry", reason, record)``, ``("lease_expiry", new status, record)`` and
        ``("dead_letter", reason, record)``; none for a refusal or a replay."""
        if self.error is not None or self.replayed:
            return []
        command = self.command
        found: list[tuple[str, str, DispatchRecord]] = []
        if isinstance(command, (c.Claim, c.ClaimDispatch, c.ClaimNext)):
            found += [("claim", "", r) for r in self.dispatches()]
        elif isinstance(command, c.Nack):
            for record in self.dispatches():
                if record.status is DispatchStatus.QUEUED:
                    found.append(("retry", "retry_backoff", record))
                elif record.status is DispatchStatus.DEAD_LETTER:
                    found.append(("dead_letter", "attempts_exhausted", record))
        elif isinstance(command, c.DeadLetter):
            found += [("dead_letter", "permanent_failure", r) for r in self.dispatches()]
        elif isinstance(command, c.ReclaimExpiredLeases):
            for record in self.dispatches():
                found.append(("lease_expiry", record.status.value, record))
                if record.status is DispatchStatus.QUEUED:
                    found.append(("retry", "expired_lease_reclaimed", record))
                elif record.status is DispatchStatus.DEAD_LETTER:
                    found.append(("dead_letter", "lease_expired", record))
        return found


class CommandObserver:
    """Observes every command the runner runs; this one writes the structured logs. Subclass it
    and extend ``started`` and ``finished`` (calling ``super()``) to do more."""

    def observe(self, command: c.Command[Any]) -> Observation:
        return Observation(self, command)

    def started(self, seen: Observation) -> None:
        """Called when the command starts, before its first attempt."""

    def finished(self, seen: Observation) -> None:
        """Called when the command ends, with its result or its error."""
        if seen.error is not None:
            _log_refusal(seen)
            return
        if seen.attempts > 1 and not seen.replayed and log.isEnabledFor(logging.INFO):
            log.info(
                "%s committed after %d attempts (conflicts with concurrent writers)",
                seen.command.name,
                seen.attempts,
                extra=_fields(seen, attempts=seen.attempts),
            )
        if not isinstance(seen.command, _QUIET):
            for effect, detail, record in seen.effects():
                _log_effect(seen, effect, detail, record)


def _fields(seen: Observation, **more: Any) -> dict[str, Any]:
    return {"command": seen.command.name, "outcome": seen.outcome, **seen.ids(), **more}


def _log_refusal(seen: Observation) -> None:
    error = seen.error
    name = seen.command.name
    if isinstance(error, DispatchSuperseded):
        log.warning(
            "%s fenced: %s", name, error, extra=_fields(seen, error_type="DispatchSuperseded", reason=error.reason)
        )
    elif isinstance(error, MailboxError):
        if log.isEnabledFor(logging.INFO):
            more: dict[str, Any] = {"error_type": type(error).__name__}
            if isinstance(error, InvalidArgument):
                more["field"] = error.field
            log.info("%s refused: %s", name, error, extra=_fields(seen, **more))
    elif isinstance(error, Exception):
        log.error("%s failed: %s", name, error, extra=_fields(seen, error_type=type(error).__name__))


_EFFECT_LEVELS = {"retry": logging.INFO, "lease_expiry": logging.INFO, "dead_letter": logging.WARNING}


def _log_effect(seen: Observation, effect: str, detail: str, record: DispatchRecord) -> None:
    level = _EFFECT_LEVELS.get(effect)
    if level is None or not log.isEnabledFor(level):
        return  # a claim is counted by metrics, not logged
    fields = _fields(
        seen,
        thread_id=record.thread_id,
        run_id=record.run_id,
        dispatch_id=record.dispatch_id,
        attempt_count=record.attempt_count,
        reason=detail,
    )
    if effect == "retry":
        fields["available_at"] = record.available_at
        message = f"dispatch {record.dispatch_id} requeued for attempt {record.attempt_count + 1} ({detail})"
    elif effect == "lease_expiry":
        message = f"lease of dispatch {record.dispatch_id} expired (now {detail})"
    else:
        fields["error"] = record.last_error
        message = f"dispatch {record.dispatch_id} dead-lettered ({detail})"
    log.log(level, "%s", message, extra=fields)


DEFAULT_OBSERVER = CommandObserver()
