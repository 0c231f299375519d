"""The transition tables of ``domain/transitions.py`` agree with what the aggregates do.

A seeded random driver issues commands of every kind (many refused) on a few threads; every move
the Dispatch and Run aggregates then made, read back from the log, must be in its table, and
every move in a table must have happened in some run of the driver (so the table claims nothing
the code never does). The Run table must also stay inside ``run_record.MOVES``.
"""

from __future__ import annotations

import contextlib
import itertools
import random
from collections import defaultdict
from typing import Any

import pytest

from run_mailbox import MailboxService, TerminationReason, ToolCallResume, ToolTicket
from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.errors import MailboxError
from run_mailbox.domain.run import Run
from run_mailbox.domain.run_record import MOVES
from run_mailbox.domain.transitions import DISPATCH_TRANSITIONS, RUN_TRANSITIONS, Transition, transitions
from run_mailbox.domain.values import RunStatus
from tests.conftest import ManualClock

SEEDS = range(6)
TERMINATIONS = ["natural_end", "stopped", "cancelled", "blocked", "error"]


class Driver:
    """Random, mostly plausible commands: the state is read back from the service each step."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = ManualClock()
        ids = itertools.count(1)
        self.service = MailboxService(
            env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, clock=self.clock, id_factory=lambda: f"id-{next(ids)}"
        )
        self.threads = [f"t{i}" for i in range(3)]
        self.runs: list[str] = []
        self.claims: dict[str, str] = {}  # dispatch id -> claim token
        self.dispatches: list[str] = []
        self.counter = 0

    def step(self) -> None:
        action = self.rng.choice(
            [self.submit] * 3
            + [self.claim] * 3
            + [self.start] * 3
            + [self.extend, self.finish_claim, self.finish_claim, self.finish_claim, self.cancel, self.interrupt]
            + [self.decide, self.decide, self.finish_run, self.commit, self.reclaim]
        )
        self.clock.advance(self.rng.choice([1, 5, 50, 400]))
        if not self.runs:
            action = self.submit
        with contextlib.suppress(MailboxError):
            action()

    def _new(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def submit(self) -> None:
        run_id = self._new("r")
        self.runs.append(run_id)
        record = self.service.submit(self.rng.choice(self.threads), run_id, max_attempts=self.rng.choice([1, 2, 3]))
        self.dispatches.append(record.dispatch_id)

    def claim(self) -> None:
        lease = self.rng.choice([100, 1_000, 60_000])
        if self.rng.random() < 0.5:
            record = self.service.claim(self.rng.choice(self.threads), consumer_id="w", lease_ms=lease)
            found = [] if record is None else [record]
        else:
            found = self.service.claim_next(consumer_id="w", lease_ms=lease, limit=2)
        for record in found:
            assert record.claim_token is not None
            self.claims[record.dispatch_id] = record.claim_token

    def _claimed(self) -> tuple[str, str]:
        if not self.claims:
            raise MailboxError("nothing claimed")
        dispatch_id = self.rng.choice(sorted(self.claims))
        return dispatch_id, self.claims[dispatch_id]

    def start(self) -> None:
        dispatch_id, token = self._claimed()
        self.service.record_start(dispatch_id, claim_token=token)

    def extend(self) -> None:
        dispatch_id, token = self._claimed()
        self.service.extend_lease(dispatch_id, claim_token=token, lease_ms=1_000)

    def finish_claim(self) -> None:
        dispatch_id, token = self._claimed()
        choice = self.rng.choice(["ack", "nack", "dead_letter", "suspend", "suspend"])
        if choice == "ack":
            self.service.ack(dispatch_id, claim_token=token)
        elif choice == "nack":
            self.service.nack(dispatch_id, claim_token=token, error="flaky")
        elif choice == "dead_letter":
            self.service.dead_letter(dispatch_id, claim_token=token, error="broken")
        else:
            tickets = [
                ToolTicket(tool_call_id=self._new("call"), tool_name="shell") for _ in range(self.rng.randint(1, 2))
            ]
            self.service.suspend(dispatch_id, claim_token=token, tickets=tickets)
        self.claims.pop(dispatch_id, None)

    def cancel(self) -> None:
        self.service.cancel(self.rng.choice(self.dispatches))

    def interrupt(self) -> None:
        self.service.interrupt(self.rng.choice(self.threads))

    def decide(self) -> None:
        waiting = [r for r in self.runs if self.service.get_run(r).status is RunStatus.WAITING]
        if not waiting:
            return
        run = self.service.get_run(self.rng.choice(waiting))
        pending = run.pending_tickets()
        if not pending:
            return
        resume = ToolCallResume(
            decision_id=self._new("dec"), action="resume", result={"approved": self.rng.random() < 0.7}
        )
        # Now and then the resume dispatch's id is taken already: the resume fails (MailboxResumeFailed).
        taken = self.rng.choice(self.dispatches) if self.rng.random() < 0.15 else None
        outcome = self.service.decide(run.run_id, pending[0].tool_call_id, resume, resume_dispatch_id=taken)
        if outcome.resume_dispatch_id is not None:
            self.dispatches.append(outcome.resume_dispatch_id)

    def finish_run(self) -> None:
        kind: Any = self.rng.choice(TERMINATIONS)
        value = "gave up" if kind == "error" else None
        self.service.finish_run(self.rng.choice(self.runs), TerminationReason(type=kind, value=value))

    def commit(self) -> None:
        run = self.service.get_run(self.rng.choice(self.runs))
        message = {"message_id": self._new("m"), "role": "assistant", "content": [{"type": "text", "text": "hi"}]}
        self.service.commit_messages(run.thread_id, run.run_id, [message])

    def reclaim(self) -> None:
        self.clock.advance(self.rng.choice([0, 2_000]))
        for record in self.service.reclaim_expired_leases():
            self.claims.pop(record.dispatch_id, None)


def observed_moves(service: MailboxService) -> tuple[set[Transition], set[Transition]]:
    """Every (status before, event, status after) of every Dispatch and Run in the log."""
    dispatch_status: dict[Any, str | None] = defaultdict(lambda: None)
    run_record: dict[Any, Any] = {}
    dispatch_moves, run_moves = set(), set()
    for notification in service.recorder.select_notifications(start=0, limit=1_000_000):
        event = service.mapper.to_domain_event(notification)
        if isinstance(event, Dispatch.Event):
            before = dispatch_status[event.originator_id]
            after = event.dispatch.status.value
            dispatch_moves.add(Transition(before, event.kind(), after))
            dispatch_status[event.originator_id] = after
        elif isinstance(event, Run.Event):
            record = run_record.get(event.originator_id)
            aggregate: Any = type("Fold", (), {"record": record})()
            event.apply(aggregate)
            run_moves.add(
                Transition(None if record is None else record.status.value, event.kind(), aggregate.record.status.value)
            )
            run_record[event.originator_id] = aggregate.record
    return dispatch_moves, run_moves


@pytest.fixture(scope="module")
def moves() -> tuple[set[Transition], set[Transition]]:
    dispatch_moves: set[Transition] = set()
    run_moves: set[Transition] = set()
    for seed in SEEDS:
        driver = Driver(seed)
        for _ in range(400):
            driver.step()
        found = observed_moves(driver.service)
        dispatch_moves |= found[0]
        run_moves |= found[1]
        driver.service.close()
    return dispatch_moves, run_moves


def test_every_dispatch_move_is_in_the_table_and_every_listed_move_happens(moves):
    table = set(transitions(DISPATCH_TRANSITIONS))
    assert moves[0] - table == set(), "moves the table does not list"
    assert table - moves[0] == set(), "listed moves the driver never saw"


def test_every_run_move_is_in_the_table_and_every_listed_move_happens(moves):
    table = set(transitions(RUN_TRANSITIONS))
    assert moves[1] - table == set(), "moves the table does not list"
    assert table - moves[1] == set(), "listed moves the driver never saw"


def test_the_run_table_stays_inside_the_moves_the_run_record_allows():
    for move in transitions(RUN_TRANSITIONS):
        if move.source is not None and move.source != move.target:
            assert RunStatus(move.target) in MOVES[RunStatus(move.source)], move
    changing = {(m.source, m.target) for m in transitions(RUN_TRANSITIONS) if m.source != m.target}
    allowed = {(s.value, t.value) for s, targets in MOVES.items() for t in targets if s != t}
    assert changing - {(None, "created")} == allowed


def test_every_status_has_a_row():
    assert set(DISPATCH_TRANSITIONS) - {None} == set(Dispatch.record_type.model_fields["status"].annotation)
    assert set(RUN_TRANSITIONS) - {None} == set(RunStatus)
