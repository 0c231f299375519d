"""Replay properties: the log is the truth, and everything derived from it is reproducible.

Each test drives random command programs through a subclass of the mailbox machine (so every
step is also checked as in ``test_mailbox_state_machine``) and checks one property.
"""

from __future__ import annotations

from hypothesis.stateful import run_state_machine_as_test

from run_mailbox.domain.permissions import ToolCallResume
from run_mailbox.infrastructure.service import MailboxService
from tests.properties._profiles import share
from tests.properties.replay_machines import (
    CanonicalMachine,
    RebuildMachine,
    RedeliveryMachine,
    ReissueMachine,
    TimeTravelMachine,
)


def test_views_replayed_from_the_start_equal_views_built_incrementally() -> None:
    """Every view built batch by batch as the log is written equals the same view rebuilt from
    position 0 (projections design: each view is rebuildable and identical when rebuilt)."""
    run_state_machine_as_test(RebuildMachine, settings=share(0.15))


def test_views_are_unchanged_by_events_delivered_twice() -> None:
    """Every event delivered twice, and each batch delivered again with the next one, through
    the store and straight to the handlers, leaves every view as delivering it once does."""
    run_state_machine_as_test(RedeliveryMachine, settings=share(0.1))


def test_reissuing_a_command_with_its_idempotency_key_returns_the_first_result_and_writes_nothing() -> None:
    """Every command issued with a key, re-issued at once and again at the end: the original
    result and no write; with any one digested argument changed: IdempotencyConflict and no
    write (docs/decisions/0003, spec H 151-152)."""
    run_state_machine_as_test(ReissueMachine, settings=share(0.1))


def test_every_aggregate_at_any_earlier_version_is_what_it_was_then() -> None:
    """Time travel: the record read at version v at the end equals the record read when v was
    the latest; every aggregate folded from its events equals the live one (snapshots every 3
    events, so reads from a snapshot plus later events are covered)."""
    run_state_machine_as_test(TimeTravelMachine, settings=share(0.15))


def test_the_canonical_export_is_the_same_bytes_on_every_replay() -> None:
    """The canonical export read twice, read through a second service on the same SQLite file,
    and rendered by the canonical_feed view is the same JSON, line for line (spec E)."""
    run_state_machine_as_test(CanonicalMachine, settings=share(0.05))


def test_a_decision_delivered_again_after_a_later_suspension_returns_its_first_outcome(
    memory_service: MailboxService,
) -> None:
    """Spec 145 / ADR 0008: re-sending an identical decision returns the original outcome, also
    after the run resumed and suspended again: a path too deep for the machine to reach often,
    so it is spelled out here (it failed until the decision stored its pending tool calls)."""
    s = memory_service

    def start_and_suspend(tool_calls: list[str]) -> None:
        claimed = s.claim("t", consumer_id="w")
        assert claimed is not None and claimed.claim_token is not None
        s.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
        tickets = [{"tool_call_id": c, "tool_name": "shell"} for c in tool_calls]
        s.suspend(claimed.dispatch_id, claim_token=claimed.claim_token, tickets=tickets)

    s.submit("t", "r")
    start_and_suspend(["a", "b"])
    first = s.decide("r", "a", ToolCallResume(decision_id="x1", action="resume"))
    assert first.pending_tool_calls == ["b"]
    s.decide("r", "b", ToolCallResume(decision_id="x2", action="resume"))  # queues the resume
    start_and_suspend(["c"])
    assert s.decide("r", "a", ToolCallResume(decision_id="x1", action="resume")) == first
