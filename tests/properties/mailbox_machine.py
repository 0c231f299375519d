"""MailboxMachine: every command of the service, with valid and invalid arguments mixed.

Each rule is named after the command it issues, so a shrunk counterexample reads as a
command list (``state.submit(...)``, ``state.claim(...)``, ...). Every command goes through
``CommandDriver.execute`` (``_driver.py``): predicted by the oracle, refusals must write
nothing, and the model is refreshed; the invariants (``_invariants.py``) run after every step.
Each example starts with a run waiting for decisions and a busy thread with queued work.

Subclasses pick the backend (``backend``, see ``machine_on``) and hook ``after_command`` / ``at_end``.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from run_mailbox.domain.permissions import ToolCallResume
from tests.properties import _backends, _invariants
from tests.properties._calls import (
    OWNER_DEFAULTS,
    UNKNOWN_ID_COMMANDS,
    choose_messages,
    ticket,
    unknown_id_call,
)
from tests.properties._edge_rules import EdgeRules
from tests.properties._model import THREADS
from tests.properties._vocabulary import (
    CLAIMS,
    CONSUMERS,
    ERRORS,
    KEYED,
    LEASES,
    LIVE_CLAIMS,
    OTHER_TOKEN,
    OWNER_COMMANDS,
    STARTS,
    SUBMITTED,
    THREAD_IDS,
    TICKETS,
    TOKENS,
    WAITING_RUNS,
    Claim,
    Refused,
    Submitted,
    has_live_claim,
    has_waiting_run,
    mostly,
)


class MailboxMachine(EdgeRules):
    """Every command of the service as a rule; see the module docstring."""

    checked_at = 0  # the clock when the mailboxes were last checked at every thread

    # ------------------------------------------------------------------ a run waiting from the start

    @initialize(target=SUBMITTED, tool_calls=st.integers(1, 3))
    def a_run_waits_for_decisions(self, tool_calls: int) -> Any:
        """submit, claim, record_start and suspend on t3: every example starts with a waiting run,
        so decisions, resumes and their interplay with the other commands are reached."""
        run_id, thread = self.model.fresh("r"), THREADS[-1]
        submit = {"thread_id": thread, "run_id": run_id, "agent_id": "agent", "priority": 128, "dedupe_key": None}
        record = self.execute("submit", {**submit, "max_attempts": 5, "available_at": None, "dispatch_id": None})
        claimed = self.execute("claim", {"thread_id": thread, "consumer_id": "w1", "lease_ms": 30_000})
        owner = {"dispatch_id": record.dispatch_id, "claim_token": claimed.claim_token}
        self.execute("record_start", {**owner, "instance_id": None})
        tickets = [ticket(self.model.fresh("c")) for _ in range(tool_calls)]
        self.execute("suspend", {**owner, "tickets": tickets})
        return Submitted(record.dispatch_id, run_id)

    @initialize(target=CLAIMS, thread=st.sampled_from(THREADS[:-1]), queued=st.integers(1, 2))
    def a_thread_has_a_claim_and_a_queue(self, thread: str, queued: int) -> Any:
        """submit and claim on t1 or t2: every example also starts with a busy thread that has
        queued work."""
        for priority in range(queued + 1):
            run_id, dispatch_id = self.model.fresh("r"), self.model.fresh("d")
            submit = {"thread_id": thread, "run_id": run_id, "agent_id": "agent", "priority": priority}
            self.execute("submit", {**submit, "dedupe_key": None, "max_attempts": 3, "available_at": None,
                                    "dispatch_id": dispatch_id})  # fmt: skip
        return self._claims(self.execute("claim", {"thread_id": thread, "consumer_id": "w2", "lease_ms": 30_000}))

    # ------------------------------------------------------------------ dispatch commands

    @rule(
        target=SUBMITTED,
        thread=THREAD_IDS,
        priority=mostly([128, 0, 255], [256]),
        dedupe_key=st.sampled_from([None, None, "k1", "k2"]),
        max_attempts=mostly([5, 1, 2], [0]),
        delay_ms=st.sampled_from([0, 0, 100, 5_000]),
        named=st.booleans(),
        keyed=KEYED,
    )
    def submit(self, thread: str, priority: int, dedupe_key: str | None, max_attempts: int, delay_ms: int,
               named: bool, keyed: bool) -> Any:  # fmt: skip
        run_id = self.model.fresh("r")
        kwargs = {
            "thread_id": thread,
            "run_id": run_id,
            "agent_id": "agent",
            "priority": priority,
            "dedupe_key": dedupe_key,
            "max_attempts": max_attempts,
            "available_at": self.clock.now + delay_ms if delay_ms else None,
            "dispatch_id": self.model.fresh("d") if named else None,
        }
        record = self.execute("submit", kwargs, keyed)
        return multiple() if isinstance(record, Refused) else Submitted(record.dispatch_id, run_id)

    @rule(submission=SUBMITTED, reuse=st.sampled_from(["run_id", "dispatch_id"]), thread=THREAD_IDS)
    def submit_again(self, submission: Submitted, reuse: str, thread: str) -> None:
        """A submit reusing the run id or the dispatch id of an earlier one."""
        run_id = submission.run_id if reuse == "run_id" else self.model.fresh("r")
        dispatch_id = submission.dispatch_id if reuse == "dispatch_id" else None
        kwargs = {"thread_id": thread, "run_id": run_id, "agent_id": "agent", "priority": 128, "dedupe_key": None}
        self.execute("submit", {**kwargs, "max_attempts": 5, "available_at": None, "dispatch_id": dispatch_id})

    def _claims(self, records: Any) -> Any:
        if isinstance(records, Refused) or records is None:
            return multiple()
        records = records if isinstance(records, list) else [records]
        return multiple(*(Claim(r.dispatch_id, r.claim_token) for r in records))

    @rule(target=CLAIMS, thread=THREAD_IDS, consumer=CONSUMERS, lease_ms=LEASES, start=STARTS, keyed=KEYED)
    def claim(self, thread: str, consumer: str, lease_ms: int, start: bool, keyed: bool) -> Any:
        kwargs = {
            "thread_id": thread,
            "consumer_id": consumer,
            "lease_ms": lease_ms,
            **({"start": True} if start else {}),
        }
        return self._claims(self.execute("claim", kwargs, keyed))

    @rule(target=CLAIMS, consumer=CONSUMERS, lease_ms=LEASES, limit=mostly([1, 2, 3], [0]), start=STARTS, keyed=KEYED)
    def claim_next(self, consumer: str, lease_ms: int, limit: int, start: bool, keyed: bool) -> Any:
        kwargs = {"consumer_id": consumer, "lease_ms": lease_ms, "limit": limit, **({"start": True} if start else {})}
        return self._claims(self.execute("claim_next", kwargs, keyed))

    @rule(target=CLAIMS, submission=SUBMITTED, consumer=CONSUMERS, lease_ms=LEASES, start=STARTS, keyed=KEYED)
    def claim_dispatch(self, submission: Submitted, consumer: str, lease_ms: int, start: bool, keyed: bool) -> Any:
        kwargs = {"dispatch_id": submission.dispatch_id, "consumer_id": consumer, "lease_ms": lease_ms}
        kwargs |= {"start": True} if start else {}
        return self._claims(self.execute("claim_dispatch", kwargs, keyed))

    def _owner(self, claim: Claim, token: str) -> dict[str, Any]:
        chosen = {"own": claim.token, "other": OTHER_TOKEN}.get(token, token)
        return {"dispatch_id": claim.dispatch_id, "claim_token": chosen}

    @precondition(has_live_claim)
    @rule(claim=LIVE_CLAIMS, token=TOKENS, lease_ms=LEASES, keyed=KEYED)
    def extend_lease(self, claim: Claim, token: str, lease_ms: int, keyed: bool) -> None:
        self.execute("extend_lease", {**self._owner(claim, token), "lease_ms": lease_ms}, keyed)

    @precondition(has_live_claim)
    @rule(claim=LIVE_CLAIMS, token=TOKENS, named=st.booleans(), keyed=KEYED)
    def record_start(self, claim: Claim, token: str, named: bool, keyed: bool) -> None:
        instance = self.model.fresh("i") if named else None
        self.execute("record_start", {**self._owner(claim, token), "instance_id": instance}, keyed)

    @precondition(has_live_claim)
    @rule(claim=LIVE_CLAIMS, token=TOKENS, keyed=KEYED)
    def ack(self, claim: Claim, token: str, keyed: bool) -> None:
        self.execute("ack", self._owner(claim, token), keyed)

    @precondition(has_live_claim)
    @rule(claim=LIVE_CLAIMS, token=TOKENS, error=ERRORS, retry_in=st.sampled_from([None, None, 0, 1_000]), keyed=KEYED)
    def nack(self, claim: Claim, token: str, error: str, retry_in: int | None, keyed: bool) -> None:
        retry_at = None if retry_in is None else self.clock.now + retry_in
        self.execute("nack", {**self._owner(claim, token), "error": error, "retry_at": retry_at}, keyed)

    @precondition(has_live_claim)
    @rule(claim=LIVE_CLAIMS, token=TOKENS, error=ERRORS, keyed=KEYED)
    def dead_letter(self, claim: Claim, token: str, error: str, keyed: bool) -> None:
        self.execute("dead_letter", {**self._owner(claim, token), "error": error}, keyed)

    @rule(claim=CLAIMS, command=st.sampled_from(OWNER_COMMANDS), token=TOKENS)
    def use_old_claim(self, claim: Claim, command: str, token: str) -> None:
        """An owner command with any claim ever granted: mostly one that has ended since."""
        self.execute(command, {**self._owner(claim, token), **OWNER_DEFAULTS[command]})

    @rule(submission=SUBMITTED, keyed=KEYED)
    def cancel(self, submission: Submitted, keyed: bool) -> None:
        self.execute("cancel", {"dispatch_id": submission.dispatch_id}, keyed)

    @rule(thread=THREAD_IDS, keyed=KEYED)
    def interrupt(self, thread: str, keyed: bool) -> None:
        self.execute("interrupt", {"thread_id": thread}, keyed)

    @rule(limit=mostly([100, 1], [0]), keyed=KEYED)
    def reclaim_expired_leases(self, limit: int, keyed: bool) -> None:
        self.execute("reclaim_expired_leases", {"limit": limit}, keyed)

    @rule(ms=st.sampled_from([1, 10, 100, 1_000, 31_000]))
    def advance_time(self, ms: int) -> None:
        self.clock.now += ms

    @rule()
    def forget_cached_aggregates(self) -> None:
        """As after a restart, or for another service on the store: a submit then takes a thread it
        has not seen to be new, and the store corrects it."""
        self.service.cache.clear()

    # ------------------------------------------------------------------ permissions and messages

    @precondition(has_live_claim)
    @rule(claim=LIVE_CLAIMS, token=TOKENS, tickets=TICKETS, keyed=KEYED)
    def suspend(self, claim: Claim, token: str, tickets: str, keyed: bool) -> None:
        """Suspends for 1-3 new tool calls, or for none, a repeated one, or one decided before."""
        run = self.model.runs[self.model.dispatches[claim.dispatch_id].run_id]
        calls = {"none": [], "repeated": ["c-same", "c-same"], "malformed": ["c-ok", " c-padded"]}.get(tickets)
        if tickets == "decided":
            calls = [d.tool_call_id for d in run.decisions[-1:]] or ["c-none"]
        if calls is None:
            calls = [self.model.fresh("c") for _ in range(int(tickets))]
        self.execute("suspend", {**self._owner(claim, token), "tickets": [ticket(c) for c in calls]}, keyed)

    @precondition(has_waiting_run)
    @rule(
        target=SUBMITTED,
        submission=WAITING_RUNS,
        tool_call=st.sampled_from(["pending", "pending", "pending", "c1", "c9"]),
        decision=st.sampled_from(["fresh", "fresh", "x1", "x2"]),
        action=st.sampled_from(["resume", "resume", "cancel"]),
        approved=st.sampled_from([True, False, None]),
        resume_id=st.sampled_from(["generated", "generated", "named", "taken"]),
        keyed=KEYED,
    )
    def decide(self, submission: Submitted, tool_call: str, decision: str, action: str, approved: bool | None,
               resume_id: str, keyed: bool) -> Any:  # fmt: skip
        """A decision for a waiting run: for a pending ticket (mostly), with a fresh or a shared id."""
        run = self.model.runs[submission.run_id]
        if tool_call == "pending":
            tool_call = next(iter(t.tool_call_id for t in run.pending_tickets()), "c1")
        decision_id = self.model.fresh("x") if decision == "fresh" else decision
        result = None if approved is None else {"approved": approved}
        resume = ToolCallResume(decision_id=decision_id, action=action, result=result)
        chosen = {"generated": None, "named": self.model.fresh("d"), "taken": submission.dispatch_id}[resume_id]
        return self._decide(submission, tool_call, resume, "durable_dispatch", chosen, keyed)

    @rule(
        target=SUBMITTED,
        submission=SUBMITTED,
        pick=st.integers(0, 5),
        path=st.sampled_from(["remote_live", "durable_dispatch"]),
    )
    def decide_again(self, submission: Submitted, pick: int, path: str) -> Any:
        """Delivers one of the run's decisions again (any path), or a late decision if it has none."""
        earlier = [v for (run_id, _), v in sorted(self.model.decisions.items()) if run_id == submission.run_id]
        if not earlier:
            earlier = [("c1", ToolCallResume(decision_id="late", action="resume"))]
        tool_call, resume = earlier[pick % len(earlier)]
        return self._decide(submission, tool_call, resume, path, None, False)

    def _decide(self, submission: Submitted, tool_call: str, resume: ToolCallResume, path: str,
                resume_dispatch_id: str | None, keyed: bool) -> Any:  # fmt: skip
        kwargs = {
            "run_id": submission.run_id,
            "tool_call_id": tool_call,
            "resume": resume,
            "delivery_path": path,
            "resume_dispatch_id": resume_dispatch_id,
            "priority": 128,
        }
        outcome = self.execute("decide", kwargs, keyed)
        if isinstance(outcome, Refused) or outcome.resume_dispatch_id is None:
            return multiple()
        return Submitted(outcome.resume_dispatch_id, submission.run_id)

    @rule(
        submission=SUBMITTED,
        termination=mostly(["natural_end", "stopped", "cancelled", "error", "blocked"], ["suspended"]),
        keyed=KEYED,
    )
    def finish_run(self, submission: Submitted, termination: str, keyed: bool) -> None:
        reason = {"type": termination, "value": "gave up"} if termination == "error" else {"type": termination}
        self.execute("finish_run", {"run_id": submission.run_id, "termination": reason}, keyed)

    @rule(
        submission=SUBMITTED,
        which=st.sampled_from(["fresh", "fresh", "fresh", "again", "taken", "repeated", "none"]),
        count=st.integers(1, 3),
        altered=st.sampled_from([False, False, False, True]),
        expected=mostly(["none", "next"], ["wrong", "huge"]),
        elsewhere=st.sampled_from([False, False, False, False, True]),
        keyed=KEYED,
    )
    def commit_messages(self, submission: Submitted, which: str, count: int, altered: bool, expected: str,
                        elsewhere: bool, keyed: bool) -> None:  # fmt: skip
        """Fresh messages, the run's last commit again, a taken id, a repeated id, or none."""
        thread = self.model.runs[submission.run_id].thread_id
        messages = choose_messages(self.model, thread, submission.run_id, which, count, altered)
        if elsewhere:
            thread = THREADS[(THREADS.index(thread) + 1) % len(THREADS)]
        following = self.model.committed.get(thread, 0) + 1
        kwargs = {
            "thread_id": thread,
            "run_id": submission.run_id,
            "messages": messages,
            "expected_first_seq": {"none": None, "next": following, "wrong": following + 1, "huge": 2**62 + 1}[
                expected
            ],
        }
        self.execute("commit_messages", kwargs, keyed)

    @rule(
        pick=st.integers(0, 7),
        which=st.sampled_from(["dead", "dead", "dead", "any"]),
        priority=mostly([None, None, 0, 255], [256, -1]),
        keyed=KEYED,
    )
    def redrive(self, pick: int, which: str, priority: int | None, keyed: bool) -> None:
        """A dead letter (mostly), or any dispatch, or one already redriven, queued again."""
        dead = sorted(d.dispatch_id for d in self.model.dispatches.values() if d.status.value == "dead_letter")
        choices = dead if which == "dead" and dead else sorted(self.model.dispatches)
        if not choices:
            return
        kwargs: dict[str, Any] = {"dispatch_id": choices[pick % len(choices)]}
        if priority is not None:
            kwargs["priority"] = priority
        self.execute("redrive", kwargs, keyed)

    @rule()
    def repair_checkpoints(self) -> None:
        self.execute("repair_checkpoints", {})

    @rule(command=st.sampled_from(UNKNOWN_ID_COMMANDS), ident=st.sampled_from(["no-such", "", " x"]))
    def address_unknown_ids(self, command: str, ident: str) -> None:
        self.execute(command, unknown_id_call(command, ident))

    # ------------------------------------------------------------------ invariants

    @invariant()
    def invariants_hold(self) -> None:
        m = self.model
        _invariants.at_most_one_claimed_dispatch_per_thread(m)
        _invariants.records_have_the_shape_of_their_status(m)
        _invariants.terminal_records_never_change(m)
        _invariants.superseded_dispatches_are_behind_their_thread_epoch(m)
        _invariants.runs_point_at_their_own_dispatches(m)
        _invariants.checkpoints_tile_each_thread(m)
        _invariants.decisions_are_recorded_once_as_delivered(m)
        _invariants.dispatch_index_agrees(self.service, m)
        _invariants.record_predicates_agree(m, self.clock.now)
        touched = self.observed.threads & set(THREADS)
        moved, self.checked_at = self.clock.now != self.checked_at, self.clock.now
        _invariants.mailboxes_offer_the_best_ready(self.service, m, self.clock.now, THREADS if moved else touched)
        _invariants.mailboxes_agree(self.service, m, touched)
        _invariants.thread_logs_agree(self.service, m, touched)
        _invariants.new_messages_are_stored_as_committed(self.service, m)


def machine_on(backend: _backends.Backend, name: str, base: type[MailboxMachine] = MailboxMachine) -> type[Any]:
    """The machine (or a subclass of it) running on another backend."""
    return type(f"{base.__name__}On{name}", (base,), {"backend": staticmethod(backend)})
