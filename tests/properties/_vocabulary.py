"""The machine's vocabulary: argument strategies, the values bundles hold, and the filtered
bundles of claims still held and of runs waiting for a decision."""

from __future__ import annotations

from typing import Any, NamedTuple

from hypothesis import strategies as st
from hypothesis.stateful import Bundle

from run_mailbox.domain.errors import MailboxError
from run_mailbox.domain.values import DispatchStatus, RunStatus
from tests.properties._model import THREADS, Model

_running: list[Any] = []  # the machine whose next step is being drawn (one at a time)


def set_running(machine: Any) -> None:
    _running[:] = [machine]


def running_model() -> Model:
    return _running[0].model  # type: ignore[no-any-return]


OTHER_TOKEN = "0" * 32
TOOL_CALLS = ("c1", "c2", "c3")
CLAIMED = DispatchStatus.CLAIMED


def mostly(valid: list[Any], invalid: list[Any], odds: int = 16) -> st.SearchStrategy[Any]:
    """About ``odds`` valid values to one invalid one (shrinking prefers the first valid one)."""
    copies = max(1, odds * len(invalid) // len(valid))
    return st.sampled_from([*(valid * copies), *invalid])


THREAD_IDS = mostly(list(THREADS), ["", " t1"])
CONSUMERS = mostly(["w1", "w2"], [""])
LEASES = mostly([30_000, 1_000, 50], [0])
TOKENS = mostly(["own"], ["other", ""], odds=3)
ERRORS = mostly(["boom"], ["  "])
KEYED = st.sampled_from([False, False, False, True])
STARTS = st.sampled_from([False, False, True])  # claim with start=True: the start recorded in the same transaction
TICKETS = mostly(["1", "2", "3"], ["none", "repeated", "decided", "malformed"], odds=6)
OWNER_COMMANDS = ["ack", "dead_letter", "extend_lease", "nack", "record_start", "suspend"]


class Submitted(NamedTuple):
    dispatch_id: str
    run_id: str


class Claim(NamedTuple):
    dispatch_id: str
    token: str


class Clock:
    def __init__(self, start: int = 1_000) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


class Refused(NamedTuple):
    error: MailboxError


def _is_live(claim: Claim) -> bool:
    d = running_model().dispatches.get(claim.dispatch_id)
    return d is not None and d.status is CLAIMED and d.claim_token == claim.token


def _waits(run: Any) -> bool:
    return run is not None and run.status is RunStatus.WAITING and bool(run.pending_tickets())


def _is_waiting(submission: Submitted) -> bool:
    return _waits(running_model().runs.get(submission.run_id))


def has_live_claim(machine: Any) -> bool:
    return any(d.status is CLAIMED for d in machine.model.dispatches.values())


def has_waiting_run(machine: Any) -> bool:
    return any(_waits(r) for r in machine.model.runs.values())


SUBMITTED = Bundle("submitted")
CLAIMS = Bundle("claims")
LIVE_CLAIMS = CLAIMS.filter(_is_live)  # a claim its dispatch still holds
WAITING_RUNS = SUBMITTED.filter(_is_waiting)  # a submission whose run waits for a decision
