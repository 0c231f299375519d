"""The mailbox state machine: random command programs on every backend keep every invariant.

See ``mailbox_machine.py`` for the commands and the checks after each of them; a failure prints
the shrunk program as ``state.<command>(...)`` steps.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import run_state_machine_as_test

from run_mailbox.domain.permissions import ToolCallResume
from run_mailbox.infrastructure.service import MailboxService
from tests.properties import _backends
from tests.properties._profiles import share
from tests.properties.mailbox_machine import MailboxMachine, machine_on


def test_any_command_program_keeps_the_mailbox_invariants_in_memory() -> None:
    """Every command, valid or not, in any order: outcomes as the spec predicts, refusals write
    nothing, and the invariants hold after every step (spec A, B, C, D, F, G; Z7-Z13, Z20)."""
    run_state_machine_as_test(MailboxMachine, settings=share(1.0))


def test_any_command_program_keeps_the_mailbox_invariants_on_sqlite() -> None:
    """The same programs on the SQLite backend."""
    run_state_machine_as_test(machine_on(_backends.sqlite, "SQLite"), settings=share(0.05))


@pytest.mark.postgres
def test_any_command_program_keeps_the_mailbox_invariants_on_postgres(postgres_url: str) -> None:
    """The same programs on real Postgres (a private schema per example)."""
    machine = machine_on(_backends.postgres(postgres_url), "Postgres")
    run_state_machine_as_test(machine, settings=share(0.04, minimum=5))


def test_a_short_random_run_keeps_the_mailbox_invariants() -> None:
    """A few examples that differ on every run, even under the derandomized ci profile."""
    run_state_machine_as_test(MailboxMachine, settings=share(0.1, derandomize=False, database=None))


@settings(max_examples=25)
@example(queue=20, others=1, limit=2)
@given(queue=st.integers(0, 40), others=st.integers(1, 2), limit=st.integers(1, 3))
def test_claim_next_claims_on_as_many_threads_with_ready_work_as_its_limit_allows(
    queue: int, others: int, limit: int
) -> None:
    """claim_next(limit=n) takes the best ready dispatch of min(n, threads with ready work)
    threads, however long one thread's queue is (Z7: limit spreads across threads)."""
    service = MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=lambda: 1_000)
    for i in range(queue):
        service.submit("long", f"long-{i}", priority=0)
    for i in range(others):
        service.submit(f"other-{i}", f"other-{i}", priority=5)
    claimed = service.claim_next(consumer_id="w", limit=limit)
    assert len({c.thread_id for c in claimed}) == len(claimed)
    assert len(claimed) == min(limit, others + (1 if queue else 0)), [c.thread_id for c in claimed]


def test_a_resume_queued_without_a_priority_takes_the_priority_of_the_run_s_dispatch() -> None:
    """Found by the machine (``with_defaults``): the resume dispatch was queued at the default 128
    while the thread mailbox admitted it at the run's priority (the decision had already pointed the
    run at its not yet queued resume dispatch when the priority was looked up)."""
    service = MailboxService(env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=lambda: 1_000)
    service.submit("t", "r", priority=7)
    claimed = service.claim("t", consumer_id="w")
    assert claimed is not None and claimed.claim_token is not None
    service.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    service.suspend(
        claimed.dispatch_id, claim_token=claimed.claim_token, tickets=[{"tool_call_id": "c", "tool_name": "x"}]
    )
    outcome = service.decide("r", "c", ToolCallResume(decision_id="x", action="resume"))
    assert outcome.resume_dispatch_id is not None
    resumed = service.get_dispatch(outcome.resume_dispatch_id)
    mailbox = service.get_mailbox("t")
    assert mailbox is not None
    assert (resumed.priority, mailbox.open[resumed.dispatch_id].priority) == (7, 7)
