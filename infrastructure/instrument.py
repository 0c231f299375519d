"""``instrument`` and ``instrument_views``: OpenTelemetry for a mailbox, when the ``otel`` extra is
installed (``pip install 'run-mailbox[otel]'``).

This module imports no OpenTelemetry package itself: ``import run_mailbox`` never does, so the
mailbox costs nothing more without the extra; only these functions import it, when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from run_mailbox.infrastructure.service import MailboxService
    from run_mailbox.infrastructure.views.host import ViewHost

MISSING = "OpenTelemetry is not installed: pip install 'run-mailbox[otel]' (opentelemetry-api, and an SDK to export)"


def _telemetry() -> Any:
    try:
        from run_mailbox.infrastructure import telemetry
    except ImportError as exc:
        if exc.name is not None and exc.name.startswith("opentelemetry"):
            raise ImportError(MISSING, name=exc.name) from exc
        raise
    return telemetry


def instrument(service: MailboxService, *, tracer_provider: Any = None, meter_provider: Any = None) -> Any:
    """Spans (``mailbox.<command>``) and metrics for every command ``service`` runs, and the
    queue-depth gauge, on the given providers or OpenTelemetry's global ones; keeps the structured
    logs. Returns the observer (``service.runner.observer``). ImportError without the extra."""
    return _telemetry().instrument(service, tracer_provider=tracer_provider, meter_provider=meter_provider)


def instrument_views(host: ViewHost, *, tracer_provider: Any = None, meter_provider: Any = None) -> Any:
    """A span (``mailbox.view.batch``) and a counter for every batch ``host``'s views apply, and a
    gauge of each view's lag behind the log. ImportError without the extra."""
    return _telemetry().instrument_views(host, tracer_provider=tracer_provider, meter_provider=meter_provider)
