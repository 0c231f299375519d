"""OpenTelemetry spans and metrics for the mailbox (the ``otel`` extra: ``opentelemetry-api``).

Imported only by ``run_mailbox.instrument`` and ``run_mailbox.instrument_views``: without the
extra, nothing here is imported and the mailbox runs with its plain logging observer.

Spans: ``mailbox.<command>`` for each command (attributes ``mailbox.thread_id``, ``mailbox.run_id``,
``mailbox.dispatch_id`` where the command or its result names them, ``mailbox.outcome``,
``mailbox.attempts`` (transactions tried), ``mailbox.dispatch.attempt_count`` and
``mailbox.dispatch.status`` for a dispatch result, ``mailbox.dispatches`` for a list result,
``error.type`` for a refusal); ``mailbox.view.batch`` for each batch a view applies
(``mailbox.view``, ``mailbox.view.events``, ``mailbox.view.handed``, ``mailbox.view.applied``,
``mailbox.view.position``).

Metrics (see ``METRICS``): commands and their duration by command and outcome, claims, retries,
lease expiries and dead letters (with their reason), conflict retries, events applied by each
view; observed on collection: dispatches by status (``mailbox.queue.depth``) and each view's lag
behind the log (``mailbox.view.lag``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Status, StatusCode

from run_mailbox.domain.dispatch_record import DispatchRecord
from run_mailbox.domain.errors import MailboxError
from run_mailbox.infrastructure import observe
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.views.host import ViewHost
from run_mailbox.projections.runner import Page

SCOPE = "run_mailbox"

METRICS: dict[str, str] = {
    "mailbox.commands": "commands run, by command and outcome",
    "mailbox.command.duration": "seconds a command took, by command and outcome",
    "mailbox.command.conflict_retries": (
        "extra attempts commands needed after conflicts (a concurrent writer, a stale cached read, "
        "a thread a submit presumed new)"
    ),
    "mailbox.claims": "dispatches claimed",
    "mailbox.retries": "dispatches requeued for another attempt, by reason (retry_backoff, expired_lease_reclaimed)",
    "mailbox.lease_expiries": "expired leases reclaimed, by the dispatch's new status",
    "mailbox.dead_letters": "dispatches dead-lettered, by reason",
    "mailbox.queue.depth": "dispatches by status (observed on collection)",
    "mailbox.view.events_applied": "events applied to each view",
    "mailbox.view.lag": "log positions each view is behind the log's end (observed on collection)",
}


def _meter(meter_provider: Any) -> metrics.Meter:
    return metrics.get_meter(SCOPE, meter_provider=meter_provider)


def _tracer(tracer_provider: Any) -> trace.Tracer:
    return trace.get_tracer(SCOPE, tracer_provider=tracer_provider)


class OtelObserver(observe.CommandObserver):
    """The structured logs of :class:`CommandObserver`, plus a span and metrics per command."""

    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter) -> None:
        self.tracer = tracer
        self.commands = meter.create_counter("mailbox.commands", "{command}", METRICS["mailbox.commands"])
        self.duration = meter.create_histogram("mailbox.command.duration", "s", METRICS["mailbox.command.duration"])
        self.conflicts = meter.create_counter(
            "mailbox.command.conflict_retries", "{attempt}", METRICS["mailbox.command.conflict_retries"]
        )
        self.counters = {
            effect: meter.create_counter(f"mailbox.{name}", "{dispatch}", METRICS[f"mailbox.{name}"])
            for effect, name in (
                ("claim", "claims"),
                ("retry", "retries"),
                ("lease_expiry", "lease_expiries"),
                ("dead_letter", "dead_letters"),
            )
        }

    def started(self, seen: observe.Observation) -> None:
        command = seen.command
        span = self.tracer.start_span(f"mailbox.{command.name}", attributes={"mailbox.command": command.name})
        token = context.attach(trace.set_span_in_context(span))
        seen.extra = (span, token)

    def finished(self, seen: observe.Observation) -> None:
        super().finished(seen)
        span, token = seen.extra
        outcome = seen.outcome
        try:
            span.set_attributes({f"mailbox.{k}": v for k, v in seen.ids().items()})
            span.set_attributes({"mailbox.outcome": outcome, "mailbox.attempts": seen.attempts})
            records = seen.dispatches()
            if isinstance(seen.result, DispatchRecord):
                span.set_attribute("mailbox.dispatch.attempt_count", seen.result.attempt_count)
                span.set_attribute("mailbox.dispatch.status", seen.result.status.value)
            elif isinstance(seen.result, list):
                span.set_attribute("mailbox.dispatches", len(records))
            if seen.error is not None:
                span.set_attribute("error.type", type(seen.error).__name__)
                span.record_exception(seen.error)
                if not isinstance(seen.error, MailboxError):  # a refusal is an answer, not a fault
                    span.set_status(Status(StatusCode.ERROR, str(seen.error)))
        finally:
            context.detach(token)
            span.end()
        labels = {"mailbox.command": seen.command.name, "mailbox.outcome": outcome}
        self.commands.add(1, labels)
        self.duration.record(seen.seconds, labels)
        if seen.attempts > 1:
            self.conflicts.add(seen.attempts - 1, {"mailbox.command": seen.command.name})
        for effect, detail, _ in seen.effects():
            self.counters[effect].add(1, {"mailbox.reason": detail} if detail else {})


def instrument(service: MailboxService, *, tracer_provider: Any = None, meter_provider: Any = None) -> OtelObserver:
    """Spans and metrics for every command ``service`` runs, and the queue-depth gauge (the global
    providers unless given)."""
    observer = OtelObserver(_tracer(tracer_provider), _meter(meter_provider))
    service.runner.observer = observer

    def queue_depth(options: CallbackOptions) -> Iterable[Observation]:
        counts = service.count_by_status()
        return [Observation(n, {"mailbox.status": status}) for status, n in counts.items()]

    _meter(meter_provider).create_observable_gauge(
        "mailbox.queue.depth", [queue_depth], "{dispatch}", METRICS["mailbox.queue.depth"]
    )
    return observer


class BatchObserver:
    """A span and a counter for each batch a view applies."""

    def __init__(self, tracer: trace.Tracer, meter: metrics.Meter) -> None:
        self.tracer = tracer
        self.applied = meter.create_counter(
            "mailbox.view.events_applied", "{event}", METRICS["mailbox.view.events_applied"]
        )

    def __call__(self, view: str, page: Page, apply: Callable[[], int]) -> int:
        attributes: dict[str, str | int] = {
            "mailbox.view": view,
            "mailbox.view.events": page.read,
            "mailbox.view.handed": len(page.pairs),
            "mailbox.view.position": page.last,
        }
        with self.tracer.start_as_current_span("mailbox.view.batch", attributes=attributes) as span:
            applied = apply()
            span.set_attribute("mailbox.view.applied", applied)
        self.applied.add(applied, {"mailbox.view": view})
        return applied


def instrument_views(host: ViewHost, *, tracer_provider: Any = None, meter_provider: Any = None) -> BatchObserver:
    """Spans and metrics for every batch ``host``'s runners apply, and each view's lag."""
    meter = _meter(meter_provider)
    observer = BatchObserver(_tracer(tracer_provider), meter)
    host.observer = observer

    def lag(options: CallbackOptions) -> Iterable[Observation]:
        end = host.log_end()
        return [Observation(end - store.position(), {"mailbox.view": name}) for name, store in host.stores.items()]

    meter.create_observable_gauge("mailbox.view.lag", [lag], "{event}", METRICS["mailbox.view.lag"])
    return observer
