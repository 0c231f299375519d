"""The demo's tool permissions: which runs ask, and the simulated reviewer who answers.

Some runs ask for permission on their first attempt: the worker suspends the run with one
or two tickets and tells the :class:`Reviewer`, which after a short seeded delay reads the
run's pending tickets from the store, approves or denies each (a decision the service
delivers at least once: some are delivered a second time, by another path, and must write
nothing), and so queues the dispatch that resumes the run. A few runs are interrupted right
after their resume is queued, as if the user had typed something new.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Protocol

from run_mailbox.domain.errors import MailboxError
from run_mailbox.domain.permissions import ToolCallResume, ToolTicket
from run_mailbox.domain.results import DecisionOutcome, InterruptResult
from run_mailbox.domain.run import RunRecord
from run_mailbox.domain.values import RunStatus
from run_mailbox.infrastructure.service import MailboxService

ASK_ODDS = 0.15
"""The share of runs that ask for permission on their first attempt."""
APPROVE_ODDS = 0.7
REDELIVER_ODDS = 0.35
INTERRUPT_AFTER_RESUME_ODDS = 0.15
REVIEW_DELAY_S = (0.02, 0.1)
TOOLS = ("shell", "write_file", "http_request", "send_email")
RESUME_SUFFIX = "-resume"


class Counts(Protocol):
    def add(self, name: str, amount: int = 1) -> None: ...


def resume_dispatch_id(run_id: str) -> str:
    return f"dispatch-{run_id.removeprefix('run-')}{RESUME_SUFFIX}"


def is_resume(dispatch_id: str) -> bool:
    return dispatch_id.endswith(RESUME_SUFFIX)


def permission_tickets(seed: int, run_id: str) -> list[ToolTicket]:
    """The tickets a run asks for on its first attempt (none for most runs)."""
    rng = random.Random(f"{seed}/{run_id}/permission")
    if rng.random() >= ASK_ODDS:
        return []
    return [
        ToolTicket(tool_call_id=f"call-{k}", tool_name=rng.choice(TOOLS), arguments={"step": k})
        for k in range(1, rng.choice((1, 1, 2)) + 1)
    ]


def count_interrupt(tally: Counts, result: InterruptResult, *, by: str) -> None:
    """Counts what one interrupt did (``by`` the driver's plan or the reviewer)."""
    tally.add("interrupts")
    tally.add(f"interrupts_by_{by}")
    tally.add("superseded_queued", result.superseded_count)
    tally.add("resumes_superseded", sum(is_resume(d.dispatch_id) for d in result.superseded))
    active = result.active_dispatch
    # A claim an earlier interrupt already fenced is not interrupted again (spec Z11).
    tally.add("interrupts_active", int(active is not None and active.dispatch_epoch == result.new_dispatch_epoch - 1))


def _decision(seed: int, run_id: str, tool_call_id: str) -> tuple[ToolCallResume, bool]:
    """The reviewer's seeded decision for one ticket, and whether it is delivered twice."""
    rng = random.Random(f"{seed}/{run_id}/{tool_call_id}/decision")
    approved = rng.random() < APPROVE_ODDS
    resume = ToolCallResume(
        decision_id=f"decision-{run_id.removeprefix('run-')}-{tool_call_id}",
        action="resume",
        result={"approved": approved},
        reason="looks safe" if approved else "too risky",
    )
    return resume, rng.random() < REDELIVER_ODDS


class Reviewer(threading.Thread):
    """Decides the pending tickets of the runs the workers suspend, after a short delay.

    ``outstanding`` holds the runs a worker is suspending or has suspended whose last
    decision is not yet delivered; a run leaves it only once its resume is queued, so the
    driver knows the job is done when nothing is outstanding and no dispatch is open.
    """

    def __init__(self, service: MailboxService, seed: int, tally: Counts, stop: threading.Event) -> None:
        super().__init__(name="reviewer", daemon=True)
        self.service = service
        self.seed = seed
        self.tally = tally
        self.stop = stop
        self.failure: Exception | None = None
        self.resumed_runs: list[str] = []
        self._lock = threading.Lock()
        self._outstanding: dict[str, float] = {}
        self._generation = 0

    # ------------------------------------------------------------------ called by workers and the driver

    def expect(self, run_id: str) -> None:
        """A worker is about to suspend the run (called before, so it is never missed)."""
        delay = random.Random(f"{self.seed}/{run_id}/review").uniform(*REVIEW_DELAY_S)
        with self._lock:
            self._outstanding[run_id] = time.monotonic() + delay
            self._generation += 1

    def forget(self, run_id: str) -> None:
        """The suspension did not happen (the claim was fenced, or lost a race)."""
        with self._lock:
            self._outstanding.pop(run_id, None)
            self._generation += 1

    def snapshot(self) -> tuple[int, int]:
        """(runs outstanding, generation); the generation changes whenever the set does."""
        with self._lock:
            return len(self._outstanding), self._generation

    # ------------------------------------------------------------------ the thread

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                with self._lock:
                    due = sorted(run_id for run_id, at in self._outstanding.items() if at <= now)
                for run_id in due:
                    if self._review(run_id):
                        self._done(run_id)
                self.stop.wait(0.005)
        except Exception as exc:  # reported by the demo driver, which then fails
            self.failure = exc

    def _done(self, run_id: str) -> None:
        with self._lock:
            self._outstanding.pop(run_id, None)
            self._generation += 1

    def _review(self, run_id: str) -> bool:
        """Decides the run's pending tickets; True once none is left (its resume is queued)."""
        try:
            run = self.service.get_run(run_id)
        except MailboxError as exc:
            self.tally.add(f"race:review {type(exc).__name__}")
            return False
        if run.status is not RunStatus.WAITING:
            return False  # not suspended yet (the worker's suspend is on its way), or fenced
        for ticket in run.pending_tickets():
            try:
                self._decide(run, ticket.tool_call_id)
            except MailboxError as exc:
                self.tally.add(f"race:decide {type(exc).__name__}")
                return False  # tried again next round; a decision delivered before is a no-op
        return True

    def _decide(self, run: RunRecord, tool_call_id: str) -> None:
        resume, twice = _decision(self.seed, run.run_id, tool_call_id)
        resume_id = resume_dispatch_id(run.run_id)
        outcome = self.service.decide(
            run.run_id, tool_call_id, resume, delivery_path="remote_live", resume_dispatch_id=resume_id
        )
        self.tally.add("decisions")
        self.tally.add("approvals" if outcome.approved else "denials")
        if outcome.resume_dispatch_id is not None:
            self.tally.add("resumes_queued")
            self.resumed_runs.append(run.run_id)
            if random.Random(f"{self.seed}/{run.run_id}/interrupt").random() < INTERRUPT_AFTER_RESUME_ODDS:
                count_interrupt(self.tally, self.service.interrupt(run.thread_id), by="reviewer")
        if twice:
            self._redeliver(run.run_id, tool_call_id, resume, resume_id, outcome)

    def _redeliver(
        self, run_id: str, tool_call_id: str, resume: ToolCallResume, resume_id: str, first: DecisionOutcome
    ) -> None:
        """The same decision again by the durable path: the service returns the first outcome."""
        again = self.service.decide(
            run_id, tool_call_id, resume, delivery_path="durable_dispatch", resume_dispatch_id=resume_id
        )
        if again != first:
            raise RuntimeError(f"decision {resume.decision_id} delivered again changed its outcome: {again}")
        self.tally.add("redeliveries")
