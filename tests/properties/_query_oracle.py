"""The views' read functions answered by the reference model.

Each query of ``projections/`` (ready work, leases by expiry, dead letters, a run's row, counts by
status, pending tickets, a run's ticket history, a thread's ranges and summary, the run owning a
seq, threads with gaps, the canonical feed with ``after``, ``limit`` and ``upstream_only``) is
compared with the same question put to the rows the model computes (``_view_oracle``): the
order each promises (claim order, lease expiry, completion time, request order, seq) included.
"""

from __future__ import annotations

from typing import Any

from run_mailbox.projections import canonical_feed, checkpoint_ranges, dispatch_queue, permission_resolutions
from run_mailbox.projections import run_status as run_status_view
from tests.properties._model import THREADS, Model
from tests.properties._view_oracle import RUN_TEXT, Rows


def _rows(result: list[Any]) -> list[dict[str, Any]]:
    return [r.model_dump() for r in result]


def check_queries(m: Model, stores: dict[str, Any], want: dict[str, Rows], now: int) -> None:
    queue = list(want["dispatch_queue"]["dispatch_queue"].values())
    busy = {r["thread_id"] for r in queue if r["status"] == "claimed"}
    queued = sorted(
        (r for r in queue if r["status"] == "queued" and r["thread_id"] not in busy),
        key=lambda r: (r["priority"], r["created_at"], r["dispatch_id"]),
    )
    store = stores["dispatch_queue"]
    for t in (now - 1, now, now + 1, *(r["available_at"] for r in queued)):
        due = [r for r in queued if r["available_at"] <= t]
        assert _rows(dispatch_queue.ready(store, t)) == due[:100], f"ready at {t}"
        assert _rows(dispatch_queue.ready(store, t, limit=1)) == due[:1], f"ready at {t}, limit 1"
    leased = sorted((r for r in queue if r["status"] == "claimed"), key=lambda r: (r["lease_until"], r["dispatch_id"]))
    assert _rows(dispatch_queue.claimed_by_lease_expiry(store)) == leased
    assert _rows(dispatch_queue.claimed_by_lease_expiry(store, limit=1)) == leased[:1]
    dead = sorted(
        (r for r in queue if r["status"] == "dead_letter"), key=lambda r: (r["completed_at"], r["dispatch_id"])
    )
    assert _rows(dispatch_queue.dead_letters(store)) == dead

    runs = want["run_status"]["run_status"]
    store = stores["run_status"]
    for (run_id,), row in runs.items():
        got = run_status_view.get(store, run_id)
        assert got is not None and got.model_dump() == row, f"run_status.get({run_id})"
        try:
            got.status = "changed"
        except ValueError:  # pydantic's error for a frozen model
            pass
        else:
            raise AssertionError("a run's status row read from the view can be changed")
    assert run_status_view.get(store, "no-such-run") is None
    counts = {text: sum(1 for r in runs.values() if r["status"] == text) for text in RUN_TEXT.values()}
    assert run_status_view.counts_by_status(store) == counts

    tickets = sorted(want["permission_resolutions"]["permission_resolutions"].values(),
                     key=lambda r: (r["requested_position"], r["ticket_index"]))  # fmt: skip
    store = stores["permission_resolutions"]
    pending = [r for r in tickets if r["status"] == "pending"]
    assert _rows(permission_resolutions.pending_by_thread(store)) == pending
    for thread in THREADS:
        got = _rows(permission_resolutions.pending_by_thread(store, thread))
        assert got == [r for r in pending if r["thread_id"] == thread], f"pending tickets of {thread}"
    for run_id in m.runs:
        history = [r for r in tickets if r["run_id"] == run_id]
        assert _rows(permission_resolutions.history_of_run(store, run_id)) == history, f"history of {run_id}"

    ranges = want["checkpoint_ranges"]
    store = stores["checkpoint_ranges"]
    for thread in THREADS:
        own = sorted((r for r in ranges["checkpoint_ranges"].values() if r["thread_id"] == thread),
                     key=lambda r: (r["seq_start"], r["run_id"]))  # fmt: skip
        assert _rows(checkpoint_ranges.ranges_of_thread(store, thread)) == own, f"ranges of {thread}"
        summary = checkpoint_ranges.thread_summary(store, thread)
        expected = ranges["checkpoint_threads"].get((thread,))
        assert (summary.model_dump(mode="json") if summary else None) == expected, f"summary of {thread}"
        for seq in range(m.committed[thread] + 2):
            owner = next((r["run_id"] for r in own if r["seq_start"] <= seq <= r["seq_end"]), None)
            assert checkpoint_ranges.run_for_seq(store, thread, seq) == owner, f"seq {seq} of {thread}"
    assert checkpoint_ranges.threads_with_gaps(store) == []


def check_feed(store: Any) -> None:
    """``feed`` pages: ``after`` and ``limit`` cut the full feed; ``upstream_only`` filters it."""
    full = canonical_feed.feed(store, limit=10**6)
    assert canonical_feed.feed(store) == full[:500]
    positions = [e.position for e in full]
    for after in sorted({0, *positions[:2], *positions[-2:]}):
        assert canonical_feed.feed(store, after=after, limit=3) == [e for e in full if e.position > after][:3]
    assert canonical_feed.feed(store, limit=10**6, upstream_only=True) == [e for e in full if e.upstream]
