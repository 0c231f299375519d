"""The oracle for the batch commands: submit_many (all or none), ack_many and redrive_many (each
item on its own).

Each is predicted item by item with the single commands' oracle, from the model before the batch:
``submit_many`` is refused whole by its first refused run (malformed runs and ids repeated in the
batch first: the command refuses them before looking at the store); ``ack_many`` acks or refuses
each dispatch as ``ack`` would, and lists the refusals by type in the order given; ``redrive_many``
takes the matching dead letters not redriven yet, oldest first, up to its limit, and redrives each
as ``redrive`` would, except that a dedupe key taken by a dead letter redriven earlier in the same
batch refuses a later one, as an open dispatch holding it would.
"""

from __future__ import annotations

from typing import Any

from run_mailbox.domain.errors import DedupeKeyConflict, DispatchSuperseded, InvalidArgument
from run_mailbox.domain.values import MAX_MILLIS
from tests.properties._expect import CLAIMED, DEAD, QUEUED, Expect, is_id, refuse, succeed
from tests.properties._model import Model
from tests.properties._oracle_dispatch import submit
from tests.properties._oracle_owner import ack
from tests.properties._oracle_redrive import redrive

SUBMIT_DEFAULTS = {"agent_id": "default", "priority": 128, "dedupe_key": None, "max_attempts": 5,
                   "available_at": None, "dispatch_id": None}  # fmt: skip


def submit_many(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    runs = [{**SUBMIT_DEFAULTS, **run} for run in kw["runs"]]
    run_ids = [r["run_id"] for r in runs]
    named = [r["dispatch_id"] for r in runs if r["dispatch_id"] is not None]
    if not runs or len(set(run_ids)) != len(run_ids) or len(set(named)) != len(named):
        return refuse(InvalidArgument, "an empty batch, or a run or dispatch id given twice")
    singles = [submit(m, now, run) for run in runs]
    malformed = [e for e in singles if e.refusal == (InvalidArgument,)]
    if malformed:
        return malformed[0]
    refused = [e for e in singles if e.refusal]
    if refused:
        return refused[0]  # the first run refused refuses the batch

    def then(records: list[Any]) -> None:
        assert len(records) == len(runs), records
        for single, record in zip(singles, records, strict=True):
            assert single.then is not None
            single.then(record)

    return succeed(then)


def ack_many(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    items = kw["acks"]
    ids = [i["dispatch_id"] for i in items]
    if not items or len(set(ids)) != len(ids) or not all(is_id(i) for i in ids):
        return refuse(InvalidArgument, "an empty batch, a dispatch given twice, or a malformed id")
    if not all(is_id(i["claim_token"]) for i in items):
        return refuse(InvalidArgument, "a malformed claim token")
    singles = [ack(m, now, item) for item in items]

    def then(result: Any) -> None:
        acked = [i["dispatch_id"] for i, e in zip(items, singles, strict=True) if not e.refusal]
        assert [r.dispatch_id for r in result.acked] == acked, result
        refusals = [(i["dispatch_id"], e.refusal[0].__name__) for i, e in zip(items, singles, strict=True) if e.refusal]
        assert [(r.dispatch_id, r.error) for r in result.refused] == refusals, result
        for single, record in zip((e for e in singles if not e.refusal), result.acked, strict=True):
            assert single.then is not None
            single.then(record)
        for e in singles:
            if e.refusal == (DispatchSuperseded,) and e.then is not None:
                e.then(None)  # superseded, as ack would leave it

    writes = any(not e.refusal or e.refusal == (DispatchSuperseded,) for e in singles)
    return succeed(then, writes=writes)


def _bad_filter(kw: dict[str, Any]) -> bool:
    ids_bad = any(kw.get(name) is not None and not is_id(kw[name]) for name in ("thread_id", "agent_id"))
    times = [kw.get(name) for name in ("since", "until")]
    times_bad = any(t is not None and not 0 <= t <= MAX_MILLIS for t in times)
    reversed_window = None not in times and times[0] > times[1]
    priority = kw.get("priority")
    priority_bad = priority is not None and not 0 <= priority <= 255
    return ids_bad or times_bad or reversed_window or priority_bad or not 1 <= kw.get("limit", 100) <= 1_000


def redrive_many(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    if _bad_filter(kw):
        return refuse(InvalidArgument, "a malformed filter, limit or priority, or since after until")
    redriven = {run.redrive_of for run in m.runs.values() if run.redrive_of is not None}
    since, until = kw.get("since"), kw.get("until")

    def matches(d: Any) -> bool:
        return (
            d.status is DEAD
            and d.dispatch_id not in redriven
            and kw.get("thread_id", d.thread_id) == d.thread_id
            and kw.get("agent_id", m.runs[d.run_id].agent_id) == m.runs[d.run_id].agent_id
            and kw.get("reason", m.dead_reasons[d.dispatch_id]) == m.dead_reasons[d.dispatch_id]
            and (since is None or since <= d.updated_at)
            and (until is None or d.updated_at <= until)
        )

    candidates = sorted(filter(matches, m.dispatches.values()), key=lambda d: (d.updated_at, d.dispatch_id))
    limit = kw.get("limit", 100)
    held = {(d.thread_id, d.dedupe_key) for d in m.dispatches.values() if d.status in (QUEUED, CLAIMED)}
    taken, refused = [], []
    for dead in candidates[:limit]:
        if dead.dedupe_key is not None and (dead.thread_id, dead.dedupe_key) in held:
            refused.append((dead.dispatch_id, DedupeKeyConflict.__name__))
            continue
        single = redrive(m, now, {"dispatch_id": dead.dispatch_id, "priority": kw.get("priority")})
        assert not single.refusal, f"redrive of {dead.dispatch_id} refused: {single}"
        held.add((dead.thread_id, dead.dedupe_key))
        taken.append((dead.dispatch_id, single))

    def then(result: Any) -> None:
        assert [r.dead_letter.dispatch_id for r in result.redriven] == [d for d, _ in taken], result
        assert [(r.dispatch_id, r.error) for r in result.refused] == refused, result
        assert result.more == (len(candidates) > limit), result
        for (_, single), redone in zip(taken, result.redriven, strict=True):
            assert single.then is not None
            single.then(redone)

    return succeed(then, writes=bool(taken))
