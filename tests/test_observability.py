"""Observability: structured logs for refusals, fences, retries, lease expiries and dead letters;
OpenTelemetry spans and metrics (checked with the SDK's in-memory exporter and metric reader); and
nothing imported or paid for without the ``otel`` extra."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from run_mailbox import (
    AsyncMailboxService,
    ClaimTokenMismatch,
    CommandObserver,
    DispatchSuperseded,
    InvalidArgument,
    MailboxService,
    Observation,
    Submit,
    ViewHost,
    instrument,
    instrument_views,
)
from run_mailbox.infrastructure.views.pages import LogPages
from run_mailbox.projections.views import view_by_name


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "run_mailbox.commands" and message in r.getMessage()]


def test_refusals_fences_retries_expiries_and_dead_letters_are_logged_with_fields(memory_service, clock, caplog):
    caplog.set_level(logging.INFO, logger="run_mailbox.commands")
    mailbox = memory_service
    first = mailbox.submit("thread-1", "run-1", max_attempts=2)
    claimed = mailbox.claim("thread-1", consumer_id="w", lease_ms=1_000)
    assert claimed is not None and claimed.claim_token is not None
    with pytest.raises(ClaimTokenMismatch):
        mailbox.ack(first.dispatch_id, claim_token="not-mine")
    (refusal,) = records(caplog, "ack refused")
    assert (refusal.levelno, refusal.command, refusal.outcome) == (logging.INFO, "ack", "refused")
    assert (refusal.error_type, refusal.dispatch_id) == ("ClaimTokenMismatch", first.dispatch_id)

    with pytest.raises(InvalidArgument):
        mailbox.submit("thread-1", "run-2", priority=-1)
    assert not records(caplog, "submit refused")  # refused before it reached the runner: nothing ran

    mailbox.nack(first.dispatch_id, claim_token=claimed.claim_token, error="model timeout")
    (retry,) = records(caplog, "requeued for attempt 2")
    assert (retry.reason, retry.attempt_count, retry.run_id) == ("retry_backoff", 1, "run-1")

    clock.advance(60_000)
    again = mailbox.claim("thread-1", consumer_id="w", lease_ms=1_000)
    assert again is not None
    clock.advance(5_000)
    mailbox.reclaim_expired_leases()
    (expiry,) = records(caplog, "lease of dispatch")
    assert (expiry.reason, expiry.command) == ("dead_letter", "reclaim_expired_leases")
    (dead,) = records(caplog, "dead-lettered")
    assert (dead.levelno, dead.reason, dead.thread_id) == (logging.WARNING, "lease_expired", "thread-1")

    mailbox.submit("thread-2", "run-3")
    fenced = mailbox.claim("thread-2", consumer_id="w")
    assert fenced is not None and fenced.claim_token is not None
    mailbox.interrupt("thread-2")
    with pytest.raises(DispatchSuperseded):
        mailbox.record_start(fenced.dispatch_id, claim_token=fenced.claim_token)
    (fence,) = records(caplog, "record_start fenced")
    assert (fence.levelno, fence.outcome, fence.dispatch_id) == (logging.WARNING, "fenced", fenced.dispatch_id)


def test_conflict_retries_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="run_mailbox.commands")
    seen = Observation(CommandObserver(), Submit("thread-1", "run-1"))
    with seen:
        seen.attempts = 3
    (retried,) = records(caplog, "after 3 attempts")
    assert (retried.attempts, retried.thread_id, retried.outcome) == (3, "thread-1", "ok")


def test_a_replayed_keyed_command_is_not_logged_as_committed_after_conflicts(memory_service, caplog):
    """A re-issued keyed command takes two attempts (the key refuses the first write) but commits nothing."""
    caplog.set_level(logging.INFO, logger="run_mailbox.commands")
    memory_service.submit("thread-1", "run-1", idempotency_key="k")
    memory_service.submit("thread-1", "run-1", idempotency_key="k")
    assert not records(caplog, "committed after")


@pytest.fixture
def otel() -> Any:
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer_provider = sdk_trace.TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])

    class Otel:
        providers = {"tracer_provider": tracer_provider, "meter_provider": meter_provider}

        @staticmethod
        def spans(name: str) -> list[Any]:
            return [s for s in exporter.get_finished_spans() if s.name == name]

        @staticmethod
        def points(metric: str) -> dict[tuple[tuple[str, Any], ...], Any]:
            data = reader.get_metrics_data()
            found = {}
            for resource in data.resource_metrics if data else []:
                for scope in resource.scope_metrics:
                    for m in scope.metrics:
                        if m.name == metric:
                            for p in m.data.data_points:
                                value = getattr(p, "value", None)
                                found[tuple(sorted(p.attributes.items()))] = p if value is None else value
            return found

    return Otel()


def test_every_command_has_a_span_and_the_counters_follow_the_work(env, clock, otel):
    mailbox = MailboxService(env=env, clock=clock)
    instrument(mailbox, **otel.providers)
    try:
        queued = mailbox.submit("thread-1", "run-1", max_attempts=2)
        mailbox.submit("thread-2", "run-2")
        claimed = mailbox.claim("thread-1", consumer_id="w", lease_ms=1_000)
        assert claimed is not None and claimed.claim_token is not None
        with pytest.raises(ClaimTokenMismatch):
            mailbox.ack(queued.dispatch_id, claim_token="not-mine")
        mailbox.nack(queued.dispatch_id, claim_token=claimed.claim_token, error="flaky")
        clock.advance(60_000)
        assert len(mailbox.claim_next(consumer_id="w", lease_ms=1_000, limit=5)) == 2
        clock.advance(5_000)
        mailbox.reclaim_expired_leases()
        depth = otel.points("mailbox.queue.depth")
        points = {
            name: otel.points(f"mailbox.{name}")
            for name in ("claims", "retries", "lease_expiries", "dead_letters", "commands")
        }
    finally:
        mailbox.close()

    (submit, _) = otel.spans("mailbox.submit")
    assert submit.attributes["mailbox.thread_id"] == "thread-1" and submit.attributes["mailbox.run_id"] == "run-1"
    assert submit.attributes["mailbox.dispatch_id"] == queued.dispatch_id
    assert (submit.attributes["mailbox.outcome"], submit.attributes["mailbox.attempts"]) == ("ok", 1)
    (refused,) = otel.spans("mailbox.ack")
    assert (refused.attributes["mailbox.outcome"], refused.attributes["error.type"]) == (
        "refused",
        "ClaimTokenMismatch",
    )
    (nack,) = otel.spans("mailbox.nack")
    assert (nack.attributes["mailbox.dispatch.attempt_count"], nack.attributes["mailbox.dispatch.status"]) == (
        1,
        "queued",
    )
    (claim_next,) = otel.spans("mailbox.claim_next")
    assert claim_next.attributes["mailbox.dispatches"] == 2

    assert points["claims"] == {(): 3}
    assert points["retries"] == {
        (("mailbox.reason", "retry_backoff"),): 1,
        (("mailbox.reason", "expired_lease_reclaimed"),): 1,
    }
    assert points["lease_expiries"] == {(("mailbox.reason", "dead_letter"),): 1, (("mailbox.reason", "queued"),): 1}
    assert points["dead_letters"] == {(("mailbox.reason", "lease_expired"),): 1}
    assert points["commands"][(("mailbox.command", "ack"), ("mailbox.outcome", "refused"))] == 1
    assert (depth[(("mailbox.status", "queued"),)], depth[(("mailbox.status", "dead_letter"),)]) == (1, 1)


def test_queue_depth_and_view_lag_are_observed_and_each_view_batch_has_a_span(memory_service, otel):
    instrument(memory_service, **otel.providers)
    host = ViewHost(memory_service)
    instrument_views(host, **otel.providers)
    memory_service.submit("thread-1", "run-1")
    memory_service.submit("thread-2", "run-2")
    assert otel.points("mailbox.queue.depth")[(("mailbox.status", "queued"),)] == 2
    lag = otel.points("mailbox.view.lag")
    assert lag and all(value == memory_service.recorder.max_notification_id() for value in lag.values())
    applied = host.catch_up()
    assert set(otel.points("mailbox.view.lag").values()) == {0}
    batches = otel.spans("mailbox.view.batch")
    assert {s.attributes["mailbox.view"] for s in batches} == set(host.stores)
    end = memory_service.recorder.max_notification_id()
    assert all(s.attributes["mailbox.view.events"] == end == s.attributes["mailbox.view.position"] for s in batches)
    # Each view is handed (and its runner decodes) only the events of the kinds it handles.
    events = [type(e) for _, e in LogPages(memory_service)(0, end)]
    handed = {s.attributes["mailbox.view"]: s.attributes["mailbox.view.handed"] for s in batches}
    assert handed == {n: sum(issubclass(e, view_by_name(n).handles) for e in events) for n in host.stores}
    assert handed["dispatch_queue"] == 2 and handed["checkpoint_ranges"] == 0  # one dispatch event per submit
    counted = otel.points("mailbox.view.events_applied")
    assert {dict(k)["mailbox.view"]: v for k, v in counted.items()} == applied


def test_an_awaited_command_span_is_a_child_of_the_callers_span(memory_service, otel):
    instrument(memory_service, **otel.providers)
    tracer = otel.providers["tracer_provider"].get_tracer("host")

    async def main() -> None:
        mailbox = AsyncMailboxService(memory_service)
        with tracer.start_as_current_span("POST /runs"):
            await mailbox.submit("thread-1", "run-1")
        await mailbox.close()

    asyncio.run(main())
    (request,) = otel.spans("POST /runs")
    (submit,) = otel.spans("mailbox.submit")
    assert submit.parent is not None and submit.parent.span_id == request.context.span_id


def test_without_opentelemetry_nothing_is_imported_and_instrument_says_what_to_install():
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        import run_mailbox
        mailbox = run_mailbox.MailboxService()
        mailbox.submit("thread-1", "run-1")
        assert mailbox.claim("thread-1", consumer_id="w") is not None
        try:
            run_mailbox.instrument(mailbox)
        except ImportError as exc:
            assert "run-mailbox[otel]" in str(exc), exc
        else:
            raise AssertionError("instrument() without opentelemetry")
        loaded = [m for m, v in sys.modules.items() if m.startswith("opentelemetry") and v is not None]
        assert loaded == [], loaded
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_importing_run_mailbox_never_imports_opentelemetry():
    script = "import sys, run_mailbox; print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip() == "[]", done.stderr
