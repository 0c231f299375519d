"""The property suite catches real bugs: each test injects one (by monkeypatching, inside the
test only) and asserts that the state machine or a replay property fails on it.

If one of these starts passing, the properties lost the power to see that kind of bug.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from run_mailbox.domain.commands import Command
from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.infrastructure.handlers import claiming, fence, outcomes, permissions
from run_mailbox.projections import run_status
from tests.properties.mailbox_machine import MailboxMachine
from tests.properties.replay_machines import RedeliveryMachine, ReissueMachine

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
    with pytest.raises(AssertionError, match=r"claim(_next)?\(.*was refused with InvalidTransition"):
        run_state_machine_as_test(MailboxMachine, settings=HUNT)


def test_an_owner_write_that_skips_the_epoch_fence_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bug: after an interrupt, the claim's owner writes as if nothing happened (no lazy fence)."""

    def never_fenced(*args: Any) -> bool:
        return False

    for module in (claiming, outcomes, permissions, fence):
        for name in ("fence", "owner_fenced"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, never_fenced)
    with pytest.raises(AssertionError, match=r"DispatchSuperseded|returned True"):
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
