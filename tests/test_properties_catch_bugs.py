"""The property suite catches real bugs: each test injects one (by monkeypatching, inside the
test only) and asserts that the state machine or a replay property fails on it.

If one of these starts passing, the properties lost the power to see that kind of bug.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.stateful import run_state_machine_as_test

from run_mailbox.domain.commands import Command
from run_mailbox.domain.dispatch import Dispatch, DispatchRecord
from run_mailbox.domain.errors import InvalidTransition
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.domain.permissions import ToolCallResume
from run_mailbox.domain.run import Run
from run_mailbox.domain.values import DispatchStatus, RunStatus
from run_mailbox.infrastructure.handlers import claiming, fence, outcomes, permissions, redrive
from run_mailbox.projections import checkpoint_ranges, run_status
from tests.properties.mailbox_machine import MailboxMachine
from tests.properties.replay_machines import RedeliveryMachine, ReissueMachine
from tests.properties.test_view_properties import CHECKPOINT_HISTORIES, check_checkpoint_rows

# Fixed (not the profile's): enough derandomized examples to meet each bug, no shrinking.
HUNT = settings(
    max_examples=500,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def test_a_view_handler_that_double_counts_redelivered_events_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: run_status counts claims by incrementing, with no position guard."""

    def count_claims(position: int, event: Any, tx: Any) -> None:
        row = tx.get(run_status.TABLE, (event.dispatch.run_id,))
        if row is not None and isinstance(event, Dispatch.DispatchClaimed):
            tx.upsert(run_status.TABLE, {**row, "attempts": row["attempts"] + 1, "dispatch_position": position})

    monkeypatch.setattr(run_status.RunStatusView, "_dispatch", staticmethod(count_claims))
    with pytest.raises(AssertionError, match="view run_status: events handled twice change its rows"):
        run_state_machine_as_test(RedeliveryMachine, settings=HUNT)


def test_a_claim_that_ignores_the_thread_s_claimed_dispatch_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: the thread mailbox offers a queued dispatch while another one is claimed (Z7)."""

    def best_ready_ignoring_claims(self: ThreadMailbox, now: int) -> str | None:
        ready = [(e.order(d), d) for d, e in self.record.open.items() if not e.claimed and e.available_at <= now]
        return min(ready)[1] if ready else None

    monkeypatch.setattr(ThreadMailbox, "best_ready", best_ready_ignoring_claims)
    with pytest.raises(AssertionError, match=r"claim(_next)?\(.*was refused with InvalidTransition|mailbox offers"):
        run_state_machine_as_test(MailboxMachine, settings=HUNT)


def test_an_owner_write_that_skips_the_epoch_fence_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: after an interrupt, the claim's owner writes as if nothing happened (no lazy fence)."""

    def never_fenced(*args: Any, **kwargs: Any) -> bool:
        return False

    for module in (claiming, outcomes, permissions, fence):
        for name in ("fence", "owner_fenced"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, never_fenced)
    with pytest.raises(AssertionError, match=r"DispatchSuperseded|returned True|fenced lease extension returns False"):
        run_state_machine_as_test(MailboxMachine, settings=HUNT)


def test_an_idempotency_digest_that_ignores_an_argument_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: the digest leaves out dispatch_id, so a re-issue for another dispatch replays the
    first result instead of raising IdempotencyConflict."""

    params = Command.params

    def params_without_dispatch_id(self: Command[Any]) -> dict[str, Any]:
        return {k: v for k, v in params(self).items() if k != "dispatch_id"}

    monkeypatch.setattr(Command, "params", params_without_dispatch_id)
    with pytest.raises(AssertionError, match="expected a refusal: IdempotencyConflict"):
        run_state_machine_as_test(ReissueMachine, settings=HUNT)


def test_a_lease_counted_as_expired_at_lease_until_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: a lease expires AT ``lease_until`` instead of strictly after it (spec C74). The
    sweep reads the index first, so the properties meet it at the boundaries they aim at."""

    def expired_at_the_boundary(self: DispatchRecord, now: int) -> bool:
        return self.status is DispatchStatus.CLAIMED and self.lease_until is not None and self.lease_until <= now

    monkeypatch.setattr(DispatchRecord, "lease_expired", expired_at_the_boundary)
    with pytest.raises(AssertionError, match=r"lease_expired\(\d+\)"):
        run_state_machine_as_test(MailboxMachine, settings=HUNT)


def test_a_new_decision_id_for_an_already_decided_tool_call_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: a second decision for a decided tool call is accepted when it carries a new decision_id."""

    def check_decision_without_the_decided_check(self: Run, tool_call_id: str, resume: ToolCallResume) -> Any:
        earlier = self.record.decision(resume.decision_id)
        if earlier is not None:
            return earlier
        if self.record.status is not RunStatus.WAITING:
            raise InvalidTransition(f"cannot decide for run {self.run_id}")
        if tool_call_id not in {t.tool_call_id for t in self.record.tickets}:
            raise InvalidTransition(f"run {self.run_id} has no ticket for tool call {tool_call_id!r}")
        return None

    monkeypatch.setattr(Run, "check_decision", check_decision_without_the_decided_check)
    with pytest.raises(AssertionError, match=r"decide\(.*expected a refusal: InvalidTransition"):
        run_state_machine_as_test(MailboxMachine, settings=HUNT)


def test_adjacent_checkpoint_ranges_left_unmerged_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: the checkpoint view merges overlapping spans but no longer adjacent ones."""

    def canonical_without_adjacent(spans: Any) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        for first, last in sorted(span for span in spans if span[0] <= span[1]):
            if out and first <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], last))
            else:
                out.append((first, last))
        return out

    monkeypatch.setattr(checkpoint_ranges, "_canonical", canonical_without_adjacent)
    hunt = HUNT(given(**CHECKPOINT_HISTORIES)(check_checkpoint_rows))
    with pytest.raises(AssertionError, match="thread row"):
        hunt()


def test_a_redrive_that_drops_the_dead_letter_s_priority_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: a redrive queues the new run at the default priority instead of the dead letter's."""
    queue_again = redrive.queue_again

    def at_the_default_priority(uow: Any, dead: Any, record: DispatchRecord, priority: Any, purpose: str) -> Any:
        return queue_again(uow, dead, record, 128 if priority is None else priority, purpose)

    monkeypatch.setattr(redrive, "queue_again", at_the_default_priority)
    with pytest.raises(AssertionError, match=r"priority"):
        run_state_machine_as_test(MailboxMachine, settings=HUNT)
