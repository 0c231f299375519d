"""The demo's job: a seeded plan, the worker threads, and the driver that runs them.

What happens to an attempt is decided by its fate, a seeded function of the run and the
attempt number, so a demo is reproducible (up to thread interleaving) whichever worker
picks the run up. Some runs first ask for tool permissions (see
:mod:`run_mailbox.demo.reviewer`); each run checkpoints its messages as it goes: the
user's when it is submitted, the assistant's when it suspends and when it is acked.
Workers, reviewer and driver count what they did in a shared :class:`Tally`, which the
demo then checks against the event log.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from run_mailbox.demo.reviewer import Reviewer, is_resume, permission_tickets
from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.errors import DispatchSuperseded, MailboxError
from run_mailbox.domain.messages import Message
from run_mailbox.domain.permissions import Decision, ToolTicket
from run_mailbox.domain.values import DispatchStatus, TerminationReason
from run_mailbox.infrastructure.service import MailboxService

LEASE_MS = 200
"""Short, so that a claim abandoned by a dying worker is reclaimed within the demo."""
PRIORITIES = (0, 64, 128, 128, 128, 200, 255)
POLL_S = 0.05


@dataclass(frozen=True)
class PlannedRun:
    thread_id: str
    run_id: str
    priority: int


@dataclass(frozen=True)
class PlannedInterrupt:
    thread_id: str
    at_fraction: float
    """Fires once this fraction of the runs has finished."""
    resubmit: bool


@dataclass(frozen=True)
class Plan:
    runs: list[PlannedRun]
    interrupts: list[PlannedInterrupt]


def make_plan(threads: int, seed: int) -> Plan:
    """2 to 4 runs on each thread with varied priorities; about one thread in eight interrupted,
    every other one of those then given a fresh run."""
    rng = random.Random(seed)
    runs = []
    thread_ids = [f"thread-{t:03d}" for t in range(threads)]
    for t, thread_id in enumerate(thread_ids):
        for i in range(rng.randint(2, 4)):
            runs.append(PlannedRun(thread_id, f"run-{t:03d}-{i}", rng.choice(PRIORITIES)))
    chosen = rng.sample(thread_ids, k=max(1, threads // 8))
    interrupts = [PlannedInterrupt(t, rng.uniform(0.05, 0.35), resubmit=i % 2 == 0) for i, t in enumerate(chosen)]
    return Plan(runs, sorted(interrupts, key=lambda p: p.at_fraction))


class Fate(StrEnum):
    ACK = "ack"
    NACK = "nack"
    DEAD_LETTER = "dead_letter"
    DIE = "die"


# Cumulative odds of each fate for one attempt: most attempts succeed.
_ODDS = ((0.70, Fate.ACK), (0.85, Fate.NACK), (0.90, Fate.DEAD_LETTER), (1.0, Fate.DIE))


def fate_of(seed: int, run_id: str, attempt: int) -> tuple[Fate, float]:
    """The fate of one attempt of a run and how long its work takes (seconds)."""
    rng = random.Random(f"{seed}/{run_id}/{attempt}")
    roll = rng.random()
    fate = next(f for bound, f in _ODDS if roll < bound)
    return fate, rng.uniform(0.002, 0.015)


class Tally:
    """Thread-safe counters of what the workers and the demo driver did."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.started_runs: set[tuple[str, str]] = set()
        """(run, dispatch) pairs: a run starts afresh on each dispatch that drives it."""

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[name] += amount

    def started(self, run_id: str, dispatch_id: str) -> None:
        with self._lock:
            self.counts["starts"] += 1
            self.started_runs.add((run_id, dispatch_id))

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self.counts[name]

    def races(self) -> dict[str, int]:
        with self._lock:
            return {k.removeprefix("race:"): v for k, v in sorted(self.counts.items()) if k.startswith("race:")}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def message(run_id: str, n: int, role: str, *blocks: dict[str, Any]) -> Message:
    """The run's ``n``-th message, with an id that is the same in every demo."""
    return Message.model_validate({"message_id": f"{run_id}-m{n}", "role": role, "content": list(blocks)})


def checkpoint(service: MailboxService, tally: Tally, thread_id: str, run_id: str, messages: list[Message]) -> None:
    """Commits the run's new messages to its thread (one checkpoint) and counts them."""
    try:
        service.commit_messages(thread_id, run_id, messages)
    except MailboxError as exc:
        tally.add(f"race:commit_messages {type(exc).__name__}")
        return
    tally.add("commits")
    tally.add("messages", len(messages))


def _replies(run_id: str, decisions: list[Decision], blocked: bool) -> list[Message]:
    """What a run says when it is acked: after a suspension, the tools' results first."""
    results = [
        message(
            run_id,
            2 + n,
            "tool",
            {
                "type": "tool_result",
                "tool_use_id": d.tool_call_id,
                "content": [text("approved" if d.resume.approved else f"denied: {d.resume.reason}")],
            },
        )
        for n, d in enumerate(decisions, start=1)
    ]
    answer = "I cannot go on without that permission." if blocked else "Done."
    return [*results, message(run_id, 2 + len(decisions) + 1, "assistant", text(answer))]


@dataclass(frozen=True)
class WorkerConfig:
    seed: int
    lease_ms: int = LEASE_MS
    idle_s: float = 0.01


class Worker(threading.Thread):
    """Loops until ``stop`` is set: reclaim, claim the best ready dispatch, start it, then
    ask for permissions (a run's first attempt, when its seed says so) or meet the
    attempt's fate."""

    def __init__(
        self,
        service: MailboxService,
        name: str,
        config: WorkerConfig,
        tally: Tally,
        reviewer: Reviewer,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.service = service
        self.config = config
        self.tally = tally
        self.reviewer = reviewer
        self.stop = stop
        self.failure: Exception | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                if not self._step():
                    self.stop.wait(self.config.idle_s)
        except Exception as exc:  # reported by the demo driver, which then fails
            self.failure = exc

    def _step(self) -> bool:
        """One round; True when a dispatch was claimed."""
        try:
            self._reclaim()
        except MailboxError as exc:
            self.tally.add(f"race:reclaim {type(exc).__name__}")
        try:
            claimed = self.service.claim_next(consumer_id=self.name, lease_ms=self.config.lease_ms, limit=1)
        except MailboxError as exc:
            self.tally.add(f"race:claim {type(exc).__name__}")
            return False
        if not claimed:
            return False
        self.tally.add("claims")
        self._work_on(claimed[0])
        return True

    def _reclaim(self) -> None:
        for record in self.service.reclaim_expired_leases(limit=100):
            requeued = record.status is DispatchStatus.QUEUED
            self.tally.add("reclaims_requeued" if requeued else "reclaims_exhausted")

    def _work_on(self, claimed: DispatchRecord) -> None:
        token = claimed.claim_token or ""
        resume = is_resume(claimed.dispatch_id)
        # A resume has fates of its own; a run's first attempt may ask for permissions instead.
        fate, seconds = fate_of(
            self.config.seed, claimed.dispatch_id if resume else claimed.run_id, claimed.attempt_count
        )
        asks = [] if resume or claimed.attempt_count else permission_tickets(self.config.seed, claimed.run_id)
        step = "record_start"
        try:
            self.service.record_start(claimed.dispatch_id, claim_token=token)
            self.tally.started(claimed.run_id, claimed.dispatch_id)
            self.stop.wait(seconds)
            step = "suspend" if asks else fate.value
            if asks:
                self._suspend(claimed, token, asks)
            else:
                self._settle(claimed, token, fate, resume)
        except DispatchSuperseded:
            self.tally.add("fenced")  # an interrupt advanced the thread's epoch under this claim
        except MailboxError as exc:
            self.tally.add(f"race:{step} {type(exc).__name__}")

    def _suspend(self, claimed: DispatchRecord, token: str, tickets: list[ToolTicket]) -> None:
        """The run waits for the reviewer; its dispatch is acked."""
        run_id = claimed.run_id
        self.reviewer.expect(run_id)  # before suspending, so the driver never sees a run nobody expects
        try:
            self.service.suspend(claimed.dispatch_id, claim_token=token, tickets=tickets)
        except MailboxError:
            self.reviewer.forget(run_id)
            raise
        self.tally.add("suspensions")
        self.tally.add("tickets", len(tickets))
        uses = [{"type": "tool_use", "id": t.tool_call_id, "name": t.tool_name, "input": t.arguments} for t in tickets]
        asking = message(run_id, 2, "assistant", text("I need permission to use these tools."), *uses)
        checkpoint(self.service, self.tally, claimed.thread_id, run_id, [asking])

    def _settle(self, claimed: DispatchRecord, token: str, fate: Fate, resume: bool) -> None:
        dispatch_id, attempt = claimed.dispatch_id, claimed.attempt_count + 1
        if fate is Fate.ACK:
            decisions = self.service.get_run(claimed.run_id).decisions if resume else []
            blocked = any(d.resume.approved is False for d in decisions)
            if blocked:  # the agent saw the denial and gives up
                self.service.finish_run(claimed.run_id, TerminationReason(type="blocked", value="permission denied"))
                self.tally.add("blocked")
            self.service.ack(dispatch_id, claim_token=token)
            self.tally.add("acks")
            self.tally.add("acks_blocked", int(blocked))
            self.tally.add("resumes_completed", int(resume and not blocked))
            replies = _replies(claimed.run_id, decisions, blocked)
            checkpoint(self.service, self.tally, claimed.thread_id, claimed.run_id, replies)
        elif fate is Fate.NACK:
            record = self.service.nack(dispatch_id, claim_token=token, error=f"transient failure on attempt {attempt}")
            self.tally.add("nacks_requeued" if record.status is DispatchStatus.QUEUED else "nacks_exhausted")
        elif fate is Fate.DEAD_LETTER:
            self.service.dead_letter(dispatch_id, claim_token=token, error=f"permanent failure on attempt {attempt}")
            self.tally.add("dead_letters")
        else:
            self.tally.add("abandoned")  # the worker "dies": the lease runs out and a sweep reclaims it
