"""The oracle for the batch commands: submit_many (all or none) and ack_many (each on its own).

Both are predicted item by item with the single commands' oracle, from the model before the
batch: ``submit_many`` is refused whole by its first refused run (malformed runs and ids repeated
in the batch first: the command refuses them before looking at the store); ``ack_many`` acks or
refuses each dispatch as ``ack`` would, and lists the refusals by type in the order given.
"""

from __future__ import annotations

from typing import Any

from run_mailbox.domain.errors import DispatchSuperseded, InvalidArgument
from tests.properties._expect import Expect, is_id, refuse, succeed
from tests.properties._model import Model
from tests.properties._oracle_dispatch import submit
from tests.properties._oracle_owner import ack

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
