"""Rules that aim where bugs live: times at and next to every boundary, decisions in every
variant, and interrupts interleaved with reclaims, resumes and finishes.

- ``advance_to_boundary``: the clock moves to a lease's end, a dispatch's ``available_at`` (a
  backoff step ends there) or the time of the last interrupt, exactly or one millisecond
  either side, so a ``<`` written as ``<=`` is met at once;
- ``decide_variant``: a decision for any run (waiting, running, done, interrupted, resumed): a new
  id for a tool call already decided, another run's decision id, a decision id delivered again
  with other content (tool call, action or result), or a fresh decision for a pending ticket;
- ``interrupt_and_follow``: an interrupt followed at once by what races it in production;
- ``dead_letters_pile_up`` then ``redrive_many``: several dead letters redriven in one batch.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import multiple, precondition, rule

from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.permissions import ToolCallResume
from tests.properties._calls import message, other_command, perturbed
from tests.properties._driver import CommandDriver
from tests.properties._model import CLAIMED, QUEUED, THREADS
from tests.properties._oracle import PREDICT, conflict, returns
from tests.properties._vocabulary import (
    CLAIMS,
    KEYED,
    OTHER_TOKEN,
    SUBMITTED,
    THREAD_IDS,
    TOKENS,
    Claim,
    Refused,
    Submitted,
    mostly,
)

DECISION_VARIANTS = [
    "decided_call_new_id",
    "other_runs_decision_id",
    "same_id_other_tool_call",
    "same_id_other_action",
    "same_id_other_result",
    "fresh_for_pending",
    "malformed_decision_id",
]
POSITIONAL: dict[str, tuple[str, dict[str, Any]]] = {
    "submit": ("thread_id", {"run_id": "r-x"}),
    "claim": ("thread_id", {"consumer_id": "w1"}),
    "claim_dispatch": ("dispatch_id", {"consumer_id": "w1"}),
    "cancel": ("dispatch_id", {}),
    "interrupt": ("thread_id", {}),
    "ack": ("dispatch_id", {"claim_token": "tok"}),
    "finish_run": ("run_id", {"termination": {"type": "stopped"}}),
}
DEFAULTED = ["submit", "claim", "claim_next", "reclaim_expired_leases", "decide", "commit_messages"]
FOLLOWERS = ["reclaim_after_lease", "owner_acks", "finish_claimed_run", "claim", "decide_pending", "nothing"]


class EdgeRules(CommandDriver):
    last_interrupt_at: int | None = None

    def boundaries(self) -> list[int]:
        m = self.model
        times = {d.lease_until for d in m.dispatches.values() if d.status is CLAIMED and d.lease_until is not None}
        times |= {d.available_at for d in m.dispatches.values() if d.status is QUEUED}
        if self.last_interrupt_at is not None:
            times.add(self.last_interrupt_at)
        return sorted(times)

    @rule(pick=st.integers(0, 7), delta=st.sampled_from([0, 0, 1, -1]))
    def advance_to_boundary(self, pick: int, delta: int) -> None:
        """To a lease's end, an ``available_at`` or an interrupt's time, or 1 ms either side."""
        ahead = [t + delta for t in self.boundaries() if t + delta > self.clock.now]
        if ahead:
            self.clock.now = ahead[pick % len(ahead)]

    def _decide_kwargs(self, run_id: str, tool_call: str, resume: ToolCallResume, path: str) -> dict[str, Any]:
        return {"run_id": run_id, "tool_call_id": tool_call, "resume": resume, "delivery_path": path,
                "resume_dispatch_id": None, "priority": 128}  # fmt: skip

    @rule(
        target=SUBMITTED,
        submission=SUBMITTED,
        variant=st.sampled_from(DECISION_VARIANTS),
        pick=st.integers(0, 5),
        path=st.sampled_from(["durable_dispatch", "remote_live", "local_live"]),
    )
    def decide_variant(self, submission: Submitted, variant: str, pick: int, path: str) -> Any:
        m = self.model
        run = m.runs[submission.run_id]
        own = [(k[1], v) for k, v in sorted(m.decisions.items()) if k[0] == run.run_id]
        others = sorted(k[1] for k in m.decisions if k[0] != run.run_id)
        tickets = [t.tool_call_id for t in run.tickets] or ["c-none"]
        pending = [t.tool_call_id for t in run.pending_tickets()] or tickets
        fresh = ToolCallResume(decision_id=m.fresh("x"), action="resume", result={"approved": bool(pick % 2)})
        tool_call, resume = pending[pick % len(pending)], fresh
        if variant == "malformed_decision_id":
            resume = fresh.model_copy(update={"decision_id": f" {fresh.decision_id}"})
        elif variant == "decided_call_new_id" and run.decisions:
            tool_call = run.decisions[pick % len(run.decisions)].tool_call_id
        elif variant == "other_runs_decision_id" and others:
            resume = fresh.model_copy(update={"decision_id": others[pick % len(others)]})
        elif variant.startswith("same_id") and own:
            _, (tool_call, resume) = own[pick % len(own)]
            if variant == "same_id_other_tool_call":
                tool_call = next((t for t in tickets if t != tool_call), f"{tool_call}-other")
            elif variant == "same_id_other_action":
                resume = resume.model_copy(update={"action": "cancel" if resume.action == "resume" else "resume"})
            else:
                resume = resume.model_copy(update={"result": {"approved": resume.approved is not True}})
        outcome = self.execute("decide", self._decide_kwargs(run.run_id, tool_call, resume, path))
        if isinstance(outcome, Refused) or outcome.resume_dispatch_id is None:
            return multiple()
        return Submitted(outcome.resume_dispatch_id, run.run_id)

    @rule(target=CLAIMS, command=st.sampled_from(DEFAULTED), thread=st.sampled_from(THREADS), pick=st.integers(0, 5))
    def with_defaults(self, command: str, thread: str, pick: int) -> Any:
        """A command with its optional arguments left out: the oracle sees the spec's defaults
        (priority 128, 5 attempts, due now, a 30 s lease, claim_next of 1, a sweep of 100, a
        resume at the priority of the run's own dispatch, delivered by durable_dispatch)."""
        m = self.model
        if command == "submit":
            call = {"thread_id": thread, "run_id": m.fresh("r")}
            full = {**call, "agent_id": "default", "priority": 128, "dedupe_key": None, "max_attempts": 5,
                    "available_at": None, "dispatch_id": None}  # fmt: skip
        elif command == "claim":
            call = {"thread_id": thread, "consumer_id": "w1"}
            full = {**call, "lease_ms": 30_000}
        elif command == "claim_next":
            call = {"consumer_id": "w2"}
            full = {**call, "lease_ms": 30_000, "limit": 1}
        elif command == "reclaim_expired_leases":
            call, full = {}, {"limit": 100}
        elif command == "commit_messages":
            runs = sorted(r.run_id for r in m.runs_on(thread))
            if not runs:
                return multiple()
            messages = [message(m.fresh("m"))]
            call = {"thread_id": thread, "run_id": runs[pick % len(runs)], "messages": messages}
            full = {**call, "expected_first_seq": None}
        else:
            waiting = [r for r in m.runs.values() if r.pending_tickets() and r.status.value == "waiting"]
            if not waiting:
                return multiple()
            run = waiting[pick % len(waiting)]
            resume = ToolCallResume(decision_id=m.fresh("x"), action="resume")
            call = {"run_id": run.run_id, "tool_call_id": run.pending_tickets()[0].tool_call_id, "resume": resume}
            full = {**call, "delivery_path": "durable_dispatch", "resume_dispatch_id": None, "priority": None}
        outcome = self.execute(command, call, expect=PREDICT[command](m, self.clock.now, full))
        if command in ("claim", "claim_next") and outcome is not None and not isinstance(outcome, Refused):
            records = outcome if isinstance(outcome, list) else [outcome]
            return multiple(*(Claim(r.dispatch_id, r.claim_token) for r in records))
        return multiple()

    @rule(command=st.sampled_from(sorted(POSITIONAL)), bad=st.sampled_from(["", " x", "x\n"]))
    def positionally(self, command: str, bad: str) -> None:
        """A malformed first argument passed by position: refused naming that argument and its value."""
        name, rest = POSITIONAL[command]
        before = self.log_length()
        try:
            getattr(self.service, command)(bad, **rest)
        except InvalidArgument as error:
            assert (error.field, error.value) == (name, bad), f"{command}({bad!r}, ...) refused naming {error.field}"
        else:
            raise AssertionError(f"{command}({bad!r}, ...) was accepted")
        assert self.log_length() == before, f"{command}({bad!r}, ...) was refused yet wrote"

    @rule(
        target=SUBMITTED,
        threads=st.lists(st.sampled_from(THREADS), min_size=1, max_size=3),
        variant=st.sampled_from(["fresh", "fresh", "fresh", "reused_run", "twice_in_batch", "malformed"]),
        keyed=KEYED,
    )
    def submit_many(self, threads: list[str], variant: str, keyed: bool) -> Any:
        """Runs queued together: all of them, or none when one is refused."""
        m = self.model
        runs: list[dict[str, Any]] = [
            {
                "thread_id": t,
                "run_id": m.fresh("r"),
                "priority": 100 + i,
                "dispatch_id": m.fresh("d") if i % 2 else None,
            }
            for i, t in enumerate(threads)
        ]
        if variant == "reused_run" and m.runs:
            runs[-1]["run_id"] = sorted(m.runs)[len(runs) % len(m.runs)]
        elif variant == "twice_in_batch":
            runs.append({**runs[0], "dispatch_id": None})
        elif variant == "malformed":
            runs[-1]["thread_id"] = f" {runs[-1]['thread_id']}"
        records = self.execute("submit_many", {"runs": runs}, keyed)
        if isinstance(records, Refused):
            return multiple()
        return multiple(*(Submitted(r.dispatch_id, r.run_id) for r in records))

    @rule(claims=st.lists(CLAIMS, min_size=1, max_size=3), twice=st.sampled_from([False, False, False, True]),
          token=TOKENS, keyed=KEYED)  # fmt: skip
    def ack_many(self, claims: list[Claim], twice: bool, token: str, keyed: bool) -> None:
        """Claims acked together (mostly still held; some ended since, some with another token):
        each acked, refused or found fenced on its own."""
        acks, seen = [], set()
        for i, claim in enumerate(claims):
            if claim.dispatch_id in seen and not twice:
                continue
            seen.add(claim.dispatch_id)
            chosen = token if i == len(claims) - 1 else "own"
            acks.append({"dispatch_id": claim.dispatch_id,
                         "claim_token": {"own": claim.token, "other": OTHER_TOKEN}.get(chosen, chosen)})  # fmt: skip
        self.execute("ack_many", {"acks": acks}, keyed)

    @rule(threads=st.lists(st.sampled_from(THREADS), min_size=2, max_size=3), dedupe_key=st.sampled_from([None, "k9"]))
    def dead_letters_pile_up(self, threads: list[str], dedupe_key: str | None) -> None:
        """Runs dead-lettered one after another (by turns a permanent failure and out of attempts), as
        a bad deploy leaves them: redrive_many has several to take, for two reasons, some sharing a key."""
        for i, thread in enumerate(threads):
            dispatch_id = self.model.fresh("d")
            run = {"thread_id": thread, "run_id": self.model.fresh("r"), "agent_id": "agent", "priority": 128}
            extra = {"dedupe_key": dedupe_key, "max_attempts": 1, "available_at": None, "dispatch_id": dispatch_id}
            if isinstance(self.execute("submit", {**run, **extra}), Refused):
                continue
            lease = {"consumer_id": "w1", "lease_ms": 30_000}
            claimed = self.execute("claim_dispatch", {"dispatch_id": dispatch_id, **lease})
            if claimed is None or isinstance(claimed, Refused):
                continue
            owner = {"dispatch_id": dispatch_id, "claim_token": claimed.claim_token, "error": "bad deploy"}
            if i % 2:
                self.execute("nack", {**owner, "retry_at": None})
            else:
                self.execute("dead_letter", owner)

    @rule(
        thread=st.sampled_from([None, None, *THREADS, " t1"]),
        agent=st.sampled_from([None, None, "agent", "another-agent"]),
        reason=st.sampled_from([None, None, "attempts_exhausted", "lease_expired", "permanent_failure"]),
        window=st.sampled_from(["any", "any", "last second", "reversed"]),
        limit=mostly([100, 1, 2], [0]),
        priority=st.sampled_from([None, None, 7]),
        keyed=KEYED,
    )
    def redrive_many(
        self, thread: str | None, agent: str | None, reason: str | None, window: str, limit: int,
        priority: int | None, keyed: bool,
    ) -> None:  # fmt: skip
        """Dead letters queued again together: those that match, oldest first, each as redrive would;
        one whose dedupe key is held (by an open dispatch, or one queued earlier in the batch) alone refused."""
        given = {"thread_id": thread, "agent_id": agent, "reason": reason, "priority": priority}
        kwargs: dict[str, Any] = {name: value for name, value in given.items() if value is not None} | {"limit": limit}
        now = self.clock.now
        if window == "last second":
            kwargs.update(since=max(0, now - 1_000), until=now)
        elif window == "reversed":
            kwargs.update(since=now + 1, until=now)
        self.execute("redrive_many", kwargs, keyed)

    @rule(target=CLAIMS, thread=THREAD_IDS, then=st.sampled_from(FOLLOWERS))
    def interrupt_and_follow(self, thread: str, then: str) -> Any:
        """An interrupt, then at once what races it: the fenced owner's ack, a sweep once the
        fenced lease has run out, finishing the claimed run, a new claim, or a decision."""
        claimed = self.model.claimed_on(thread) if thread in self.model.epochs else None
        self.execute("interrupt", {"thread_id": thread})
        self.last_interrupt_at = self.clock.now
        if then == "reclaim_after_lease" and claimed is not None and claimed.lease_until is not None:
            self.clock.now = max(self.clock.now, claimed.lease_until + 1)
            self.execute("reclaim_expired_leases", {"limit": 100})
        elif then == "owner_acks" and claimed is not None and claimed.claim_token is not None:
            self.execute("ack", {"dispatch_id": claimed.dispatch_id, "claim_token": claimed.claim_token})
        elif then == "finish_claimed_run" and claimed is not None:
            self.execute("finish_run", {"run_id": claimed.run_id, "termination": {"type": "stopped"}})
        elif then == "claim":
            record = self.execute("claim", {"thread_id": thread, "consumer_id": "w1", "lease_ms": 1_000})
            if record is not None and not isinstance(record, Refused):
                return Claim(record.dispatch_id, record.claim_token)
        elif then == "decide_pending":
            waiting = [r for r in self.model.runs_on(thread) if r.pending_tickets()]
            if waiting:
                run = waiting[0]
                resume = ToolCallResume(decision_id=self.model.fresh("x"), action="resume")
                tool_call = run.pending_tickets()[0].tool_call_id
                self.execute("decide", self._decide_kwargs(run.run_id, tool_call, resume, "durable_dispatch"))
        return multiple()

    # ------------------------------------------------------------------ idempotency keys

    @precondition(lambda self: bool(self.model.keyed))
    @rule(
        pick=st.integers(0, 1_000),
        change=st.sampled_from(["same", "same", "same_at_explicit_now", "changed_argument", "other_command"]),
    )
    def reissue_with_idempotency_key(self, pick: int, change: str) -> None:
        entry = self.model.keyed[pick % len(self.model.keyed)]
        call = {**entry.kwargs, "idempotency_key": entry.key}
        if change == "same_at_explicit_now":  # the time is not an argument of the digest
            call["now"] = self.clock.now
        if change.startswith("same"):
            self.execute(entry.command, call, expect=returns(entry.result, "the key's first result"))
        elif change == "changed_argument":
            self.execute(entry.command, {**perturbed(entry, pick), "idempotency_key": entry.key}, expect=conflict(""))
        else:
            command, kwargs = other_command(entry)
            self.execute(command, {**kwargs, "idempotency_key": entry.key}, expect=conflict("another command"))
