"""The oracle for ``redrive``: a dead letter's work queued again as a new run (decision 0012).

Written from the decision, not from the handler: the dead letter and its run stay as they are; the
new run is on the same thread, for the same agent, names the dead letter (``redrive_of``), and its
dispatch keeps the dead letter's priority (unless one is given), dedupe key and ``max_attempts``. A
dead letter is redriven once: the model knows it was when one of its runs names it.
"""

from __future__ import annotations

from typing import Any

from run_mailbox.domain.dispatch import DispatchRecord
from run_mailbox.domain.errors import AlreadyRedriven, DedupeKeyConflict, InvalidArgument
from run_mailbox.domain.results import RedriveResult
from run_mailbox.domain.run import RunRecord
from tests.properties._expect import DEAD, QUEUED, Expect, is_id, record_is, refuse, same, succeed
from tests.properties._model import Model
from tests.properties._oracle_dispatch import dispatch_in


def redrive(m: Model, now: int, kw: dict[str, Any]) -> Expect:
    priority = kw.get("priority")
    bad_priority = priority is not None and (type(priority) is not int or not 0 <= priority <= 255)
    if not is_id(kw["dispatch_id"]) or bad_priority:
        return refuse(InvalidArgument, "malformed argument")
    dead = dispatch_in(m, kw["dispatch_id"], DEAD, "only a dead letter is redriven")
    if isinstance(dead, Expect):
        return dead
    if any(run.redrive_of == dead.dispatch_id for run in m.runs.values()):
        return refuse(AlreadyRedriven, "a dead letter is redriven once")
    thread, key = dead.thread_id, dead.dedupe_key
    if key is not None and any(d.dedupe_key == key for d in m.open_on(thread)):
        return refuse(DedupeKeyConflict, "an open dispatch of the thread holds the dead letter's dedupe key")
    agent = m.runs[dead.run_id].agent_id
    epoch, wanted = m.epoch_of(thread), dead.priority if priority is None else priority
    runs_before = set(m.runs)

    def then(result: RedriveResult) -> None:
        same(result.dead_letter, dispatch_id=dead.dispatch_id, thread_id=thread, run_id=dead.run_id, agent_id=agent)
        assert result.run_id not in runs_before, f"the redrive's run {result.run_id} is a new run"
        record = result.dispatch
        assert m.dispatches[record.dispatch_id] == record, "the returned record is the stored one"
        queued = DispatchRecord(
            dispatch_id=record.dispatch_id, thread_id=thread, run_id=result.run_id, priority=wanted, dedupe_key=key,
            dispatch_epoch=epoch, available_at=now, max_attempts=dead.max_attempts, created_at=now, updated_at=now,
        )  # fmt: skip
        record_is(m, queued, None)
        created = RunRecord(run_id=result.run_id, thread_id=thread, agent_id=agent, dispatch_id=record.dispatch_id,
                            created_at=now, updated_at=now, redrive_of=dead.dispatch_id)  # fmt: skip
        record_is(m, created, None)
        assert record.status is QUEUED

    return succeed(then)
