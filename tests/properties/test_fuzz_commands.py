"""Fuzzing every command's arguments: accepted means readable, refused means nothing written.

Each example builds a small world in the store (a queued dispatch, a claimed and started one, a
run waiting for two decisions), then issues one command with arguments drawn from
``_hostile`` (valid ones, and sizes and depths past every limit, NUL, lone surrogates, non-JSON
values, wrong types, bools for ints, times at 0 and at the latest, huge leases, unknown and
missing arguments). The call must either

- raise a ``MailboxError`` and leave the log, the world's records and the key table as they were
  (the two refusals that write by design, the epoch fence and a refused resume, are checked as
  accepted calls), or
- be accepted, and everything it wrote reads back: every event after the call decodes, every
  aggregate it touched folds (from snapshots and from events alone), the canonical export renders,
  the views apply it (and on Postgres rebuild from position 0 identical, with every invariant
  holding), and the same call under its idempotency key returns the same result and writes nothing.

Any other exception fails the example. Outcomes per command are counted in hypothesis'
statistics (``--hypothesis-show-statistics``) and, with ``MAILBOX_FUZZ_STATS=FILE``, written as
JSON (docs/reliability.md quotes them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st

from run_mailbox import DispatchSuperseded, InvalidArgument, MailboxError, ResumeFailed, ViewHost
from run_mailbox.domain.commands import RepairCheckpoint
from run_mailbox.infrastructure.service import MailboxService
from tests.properties import _backends
from tests.properties import _hostile as h
from tests.properties._profiles import share

STATS: Counter[tuple[str, str, str]] = Counter()
RULES = [  # how a refusal's reason reads -> the kind of input refused (for the statistics)
    ("NUL", "NUL character"),
    ("surrogate", "lone surrogate"),
    ("levels deep", "nesting past the depth limit"),
    ("nested too deep", "nesting past the depth limit"),
    ("NaN", "NaN or infinity"),
    ("not a JSON value", "not JSON (set, tuple, bytes, complex, object)"),
    ("64 bits", "integer past 64 bits"),
    ("keys must be strings", "not JSON (set, tuple, bytes, complex, object)"),
    ("passes the latest time", "derived time past the latest"),
    (" is more than max_", "past a size or count limit"),
    ("bytes of JSON", "past a size or count limit"),
    ("is larger than", "past a size or count limit"),
    ("items", "past a size or count limit"),
    ("is required", "missing or unknown argument"),
    ("is not an argument", "missing or unknown argument"),
    ("Input should be", "wrong type or out of range"),
    ("must not be empty", "malformed id or text"),
    ("whitespace", "malformed id or text"),
    ("control characters", "malformed id or text"),
    ("at most", "malformed id or text"),
]
WRITE_THEN_REFUSE = (DispatchSuperseded, ResumeFailed)
_COUNTER = itertools.count()

CONSUMER = h.mostly(["w1", "w2"], h.BAD_IDS)
TOKEN = h.ids("token", fresh=["0" * 32])
OPTIONAL_ID = st.one_of(st.none(), h.ids("dn", "dq"))
OWNED = h.ids("dc", "dq", "dw", "dn")  # hypothesis favours the first choice: the one that gets furthest
START = h.mostly([False, True], [1, "yes", None])
RUN_IN_A_BATCH = st.fixed_dictionaries(
    {"thread_id": h.ids("tn", "tq", "tc"), "run_id": h.ids("rn", fresh=["rb1", "rb2"])},
    optional={"priority": h.PRIORITIES, "dispatch_id": OPTIONAL_ID},
)
BATCH_OF_RUNS = h.mostly(st.lists(RUN_IN_A_BATCH, min_size=1, max_size=3), [[], [1], "runs", None])
ACK_IN_A_BATCH = st.fixed_dictionaries({"dispatch_id": OWNED, "claim_token": TOKEN}, optional={"extra": st.just(1)})
BATCH_OF_ACKS = h.mostly(st.lists(ACK_IN_A_BATCH, min_size=1, max_size=3), [[], [None], "acks"])
COMMANDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {  # required, optional
    "submit": (
        {"thread_id": h.ids("tn", "tq", "tc", "tw"), "run_id": h.ids("rn", "rq")},
        {
            "agent_id": h.ids(fresh=["agent"]),
            "priority": h.PRIORITIES,
            "dedupe_key": OPTIONAL_ID,
            "max_attempts": h.ATTEMPTS,
            "available_at": h.OPTIONAL_TIME,
            "dispatch_id": OPTIONAL_ID,
        },
    ),
    "cancel": ({"dispatch_id": h.ids("dq", "dc", "dw", "dn")}, {}),
    "interrupt": ({"thread_id": h.ids("tc", "tq", "tw", "tn")}, {}),
    "claim": (
        {"thread_id": h.ids("tq", "tc", "tw", "tn"), "consumer_id": CONSUMER},
        {"lease_ms": h.LEASES, "start": START},
    ),
    "claim_dispatch": (
        {"dispatch_id": h.ids("dq", "dc", "dw", "dn"), "consumer_id": CONSUMER},
        {"lease_ms": h.LEASES, "start": START},
    ),
    "claim_next": ({"consumer_id": CONSUMER}, {"lease_ms": h.LEASES, "limit": h.LIMITS, "start": START}),
    "submit_many": ({"runs": BATCH_OF_RUNS}, {}),
    "ack_many": ({"acks": BATCH_OF_ACKS}, {}),
    "extend_lease": ({"dispatch_id": OWNED, "claim_token": TOKEN}, {"lease_ms": h.LEASES}),
    "reclaim_expired_leases": ({}, {"limit": h.LIMITS}),
    "record_start": ({"dispatch_id": OWNED, "claim_token": TOKEN}, {"instance_id": OPTIONAL_ID}),
    "ack": ({"dispatch_id": OWNED, "claim_token": TOKEN}, {}),
    "nack": ({"dispatch_id": OWNED, "claim_token": TOKEN, "error": h.ERRORS}, {"retry_at": h.OPTIONAL_TIME}),
    "dead_letter": ({"dispatch_id": OWNED, "claim_token": TOKEN, "error": h.ERRORS}, {}),
    "suspend": ({"dispatch_id": OWNED, "claim_token": TOKEN, "tickets": h.TICKETS}, {}),
    "decide": (
        {
            "run_id": h.ids("rw", "rc", "rq", "rn"),
            "tool_call_id": h.mostly(["c1", "c2", "c3"], h.BAD_IDS),
            "resume": h.RESUME,
        },
        {
            "delivery_path": h.mostly(["local_live", "remote_live", "durable_dispatch"], ["by_pigeon"]),
            "resume_dispatch_id": OPTIONAL_ID,
            "priority": st.one_of(st.none(), h.PRIORITIES),
        },
    ),
    "finish_run": ({"run_id": h.ids("rq", "rc", "rw", "rn"), "termination": h.TERMINATION}, {}),
    "redrive": ({"dispatch_id": h.ids("dd", "dq", "dc", "dn")}, {"priority": h.PRIORITIES}),
    "redrive_many": (
        {},
        {
            "thread_id": h.ids("td", "tq", "tn"),
            "agent_id": h.ids(fresh=["agent", "default"]),
            "reason": h.mostly(["attempts_exhausted", "lease_expired", "permanent_failure"], ["bored", 1, ""]),
            "since": h.OPTIONAL_TIME,
            "until": h.OPTIONAL_TIME,
            "limit": h.mostly([1, 2, 1_000], [0, 1_001, True, "2"]),
            "priority": h.PRIORITIES,
        },
    ),
    "commit_messages": (
        {"thread_id": h.ids("tc", "tq", "tw", "tn"), "run_id": h.ids("rc", "rq", "rw", "rn"), "messages": h.MESSAGES},
        {"expected_first_seq": h.SEQS},
    ),
    "repair_checkpoint": (
        {"thread_id": h.ids("tc", "tq", "tw", "tn"), "run_id": h.ids("rc", "rq", "rw", "rn"), "missing": h.MISSING},
        {},
    ),
}
EVERY_CALL = {"now": h.NOW, "idempotency_key": h.KEYS}


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """One command with drawn arguments; now and then one required argument is missing or an
    unknown one is added."""
    command = draw(st.sampled_from(sorted(COMMANDS)))
    required, optional = COMMANDS[command]
    kwargs = draw(st.fixed_dictionaries(required, optional={**optional, **EVERY_CALL}))
    twist = draw(st.sampled_from(["none"] * 16 + ["drop", "extra"]))
    if twist == "drop" and required:
        kwargs.pop(draw(st.sampled_from(sorted(required))))
    elif twist == "extra":
        kwargs["bogus"] = 1
    return command, kwargs


def build_world(service: MailboxService) -> dict[str, Any]:
    n = next(_COUNTER)
    names = ["tq", "tc", "tw", "tn", "td", "dq", "dc", "dw", "dn", "dd", "rq", "rc", "rw", "rn", "rd"]
    world: dict[str, Any] = {name: f"{name}-{n}" for name in names}
    world["n"] = str(n)
    service.submit(world["tq"], world["rq"], dispatch_id=world["dq"])
    for dispatch, thread, run in (("dc", "tc", "rc"), ("dw", "tw", "rw")):
        service.submit(world[thread], world[run], dispatch_id=world[dispatch])
        token = service.claim_dispatch(world[dispatch], consumer_id="owner").claim_token
        service.record_start(world[dispatch], claim_token=token)
        world[f"token-{dispatch}"] = token
    service.submit(world["td"], world["rd"], dispatch_id=world["dd"])  # a dead letter, for the redrives
    dead = service.claim_dispatch(world["dd"], consumer_id="owner").claim_token
    service.dead_letter(world["dd"], claim_token=dead, error="poison")
    tickets = [{"tool_call_id": "c1", "tool_name": "shell"}, {"tool_call_id": "c2", "tool_name": "shell"}]
    service.suspend(world["dw"], claim_token=world["token-dw"], tickets=tickets)
    world["token"] = world["token-dc"]
    return world


def resolve(kwargs: dict[str, Any], world: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with every reference to the world replaced: in the arguments and in the items of a
    batch (never deeper: JSON arguments may be nested past the recursion limit on purpose)."""

    def one(value: Any) -> Any:
        return world[value.name] if isinstance(value, h.Ref) else value

    def item(value: Any) -> Any:
        return {k: one(v) for k, v in value.items()} if isinstance(value, dict) else one(value)

    return {k: [item(v) for v in value] if isinstance(value, list) else one(value) for k, value in kwargs.items()}


def invoke(service: MailboxService, command: str, kwargs: dict[str, Any]) -> Any:
    if command == "repair_checkpoint":  # the command object a caller of execute() holds
        made = RepairCheckpoint(**kwargs)
        result = service.execute(made)
        with pytest.raises(dataclasses.FrozenInstanceError):  # its digest keys the result: it cannot change
            made.run_id = "changed"  # type: ignore[misc]
        return result
    return getattr(service, command)(**kwargs)


def snapshot(service: MailboxService, world: dict[str, Any], key: Any) -> tuple[Any, ...]:
    return (
        service.recorder.max_notification_id(),
        [service.get_dispatch(world[d]) for d in ("dq", "dc", "dw", "dd")],
        [service.get_run(world[r]) for r in ("rq", "rc", "rw", "rd")],
        [service.get_mailbox(world[t]) for t in ("tq", "tc", "tw", "td")],
        service.tables.find_idempotency(key) if isinstance(key, str) and "\x00" not in key else None,
    )


def reads_back(service: MailboxService, host: ViewHost, position: int, world: dict[str, Any], verify: bool) -> None:
    """Everything written after ``position`` decodes, folds, renders and projects."""
    notifications = service.recorder.select_notifications(start=position, limit=100_000, inclusive_of_start=False)
    originators = {service.mapper.to_domain_event(n).originator_id for n in notifications}
    for originator in originators:
        assert service.repository.get(originator) is not None
        assert service.unsnapshotted.get(originator) is not None
    for line in service.iter_canonical_events(after=position):
        json.loads(line.to_json_line())
    for thread in ("tq", "tc", "tw", "tn", "td"):
        for record in service.list_dispatches(world[thread]):
            assert service.get_dispatch(record.dispatch_id) == record
            service.get_run(record.run_id)
    service.count_by_status()
    host.catch_up()
    if verify:
        diffs, problems = host.verify()
        assert [d for d in diffs if d.differences] == [] and problems == [], (diffs, problems)


def check_call(service: MailboxService, host: ViewHost, calls: list[tuple[str, dict[str, Any]]], verify: int) -> None:
    """Issues ``calls`` one after another in a fresh world, checking each; every ``verify``-th
    example also rebuilds the views from position 0 and checks every invariant."""
    world = build_world(service)
    for command, drawn in calls:
        kwargs = resolve(drawn, world)
        key = kwargs.get("idempotency_key")
        before = snapshot(service, world, key)
        position = before[0] or 0
        try:
            result = invoke(service, command, kwargs)
        except MailboxError as refusal:
            outcome = type(refusal).__name__
            if isinstance(refusal, InvalidArgument):
                kind = next((kind for text, kind in RULES if text in refusal.reason), "other check")
                outcome = f"InvalidArgument: {kind}"
            if not isinstance(refusal, WRITE_THEN_REFUSE):
                assert snapshot(service, world, key) == before, f"{command} refused with {refusal!r} but wrote"
        else:
            outcome = "accepted"
            if isinstance(key, str):  # the stored result reads back, and the retry writes nothing
                length = service.recorder.max_notification_id()
                assert invoke(service, command, kwargs) == result
                assert service.recorder.max_notification_id() == length
        reads_back(service, host, position, world, verify=False)
        STATS[(service.factory.__class__.__name__, command, outcome)] += 1
        event(f"{command}: {'accepted' if outcome == 'accepted' else 'refused'}")
        event(f"outcome: {outcome}")
    if int(world["n"]) % verify == 0:
        reads_back(service, host, service.recorder.max_notification_id() or 0, world, verify=True)


@contextlib.contextmanager
def hosted(backend: Callable[[], Any]) -> Iterator[tuple[MailboxService, ViewHost]]:
    """A service and its views for a whole module; when the module is done with it, its views
    rebuild from position 0 identical to the live ones and every invariant holds."""
    with backend() as env:
        service = MailboxService(env=env, clock=lambda: 10_000)
        host = ViewHost(service)
        try:
            yield service, host
            reads_back(service, host, service.recorder.max_notification_id() or 0, build_world(service), verify=True)
        finally:
            host.close()
            service.close()


@pytest.fixture(scope="module", autouse=True)
def written_statistics() -> Iterator[None]:
    yield
    path = os.environ.get("MAILBOX_FUZZ_STATS")
    if path:
        rows = [{"backend": b, "command": c, "outcome": o, "count": n} for (b, c, o), n in sorted(STATS.items())]
        with open(path, "w") as file:
            json.dump(rows, file, indent=1)


@pytest.fixture(scope="module")
def memory() -> Iterator[tuple[MailboxService, ViewHost]]:
    with hosted(_backends.memory) as pair:
        yield pair


@pytest.fixture(scope="module")
def sqlite() -> Iterator[tuple[MailboxService, ViewHost]]:
    with hosted(_backends.sqlite) as pair:
        yield pair


@pytest.fixture(scope="module")
def postgres(postgres_url: str) -> Iterator[tuple[MailboxService, ViewHost]]:
    with hosted(_backends.postgres(postgres_url)) as pair:
        yield pair


PROGRAMS = st.lists(calls(), min_size=1, max_size=3)
R = h.Ref
FENCED = [("interrupt", {"thread_id": R("tc")}), ("ack", {"dispatch_id": R("dc"), "claim_token": R("token")})]
RESUME_REFUSED = [  # the resume dispatch's id is taken: MailboxResumeFailed is written, ResumeFailed raised
    ("submit", {"thread_id": R("tn"), "run_id": R("rn"), "dispatch_id": R("dn")}),
    ("decide", {"run_id": R("rw"), "tool_call_id": "c1", "resume": {"decision_id": "x1", "action": "resume"}}),
    (
        "decide",
        {
            "run_id": R("rw"),
            "tool_call_id": "c2",
            "resume_dispatch_id": R("dn"),
            "resume": {"decision_id": "x2", "action": "cancel"},
        },
    ),
]


HELD_COMMAND = [("repair_checkpoint", {"thread_id": R("tc"), "run_id": R("rc"), "missing": {}})]  # see invoke()


def with_deep_paths(test: Any) -> Any:
    """The two refusals that write by design, and a command object run through ``execute``, reached
    in every run (random programs rarely do)."""
    return example(calls=FENCED)(example(calls=RESUME_REFUSED)(example(calls=HELD_COMMAND)(test)))


@with_deep_paths
@given(calls=PROGRAMS)
@share(0.25)
def test_every_command_accepted_in_memory_reads_back_and_every_refusal_writes_nothing(memory, calls) -> None:
    """In memory: accepted means readable (events decode, aggregates fold, the export renders,
    the views apply them, a keyed retry replays); a MailboxError leaves the log unchanged."""
    check_call(*memory, calls, verify=25)


@with_deep_paths
@given(calls=PROGRAMS)
@share(0.08)
def test_every_command_accepted_on_sqlite_reads_back_and_every_refusal_writes_nothing(sqlite, calls) -> None:
    """The same property on a SQLite file."""
    check_call(*sqlite, calls, verify=10)


@pytest.mark.postgres
@with_deep_paths
@given(calls=PROGRAMS)
@share(0.03, minimum=10)
def test_every_command_accepted_on_postgres_reads_back_and_the_views_rebuild_identical(postgres, calls) -> None:
    """The same property on Postgres, where every fifth example (and the last) also rebuilds the
    views from position 0, identical to the live ones, with every aggregate invariant holding."""
    check_call(*postgres, calls, verify=5)
