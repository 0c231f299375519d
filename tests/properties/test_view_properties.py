"""The checkpoint view under every shape of range a log can hold, against a seq-by-seq oracle.

The service writes ranges that tile each thread (the state machine checks that); a log written
elsewhere (an upstream import, a bad repair) may hold ranges that touch, overlap, leave gaps,
repeat, or replace an earlier range under the same key. Each example builds such a history
commit by commit, feeds it to the view in random batches (each batch also delivered twice), and
compares every row with what the oracle counts seq by seq: the range rows, and each thread's
high-water mark, reach, range count, gaps and overlaps as maximal spans.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any
from uuid import NAMESPACE_URL, uuid5

from hypothesis import example, given
from hypothesis import strategies as st

from run_mailbox.domain.run_events import MailboxDecisionReceived, ThreadMessagesCheckpointed
from run_mailbox.projections import checkpoint_ranges, permission_resolutions
from run_mailbox.projections.stores.memory import MemoryViewStore
from tests.properties._profiles import share

MOVES = ["touch", "touch", "overlap", "cover_all", "gap", "repeat", "replace", "same_start_other_run", "below_one"]


def _checkpoint(position: int, thread: str, run: str, first: int, last: int) -> tuple[int, Any]:
    event = ThreadMessagesCheckpointed(
        originator_id=uuid5(NAMESPACE_URL, f"{thread}/{run}"),
        originator_version=position,
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        run_id=run,
        thread_id=thread,
        now=1_000 + position,
        message_seq_start=first,
        message_seq_end=last,
        message_count=max(last - first + 1, 0),
        message_ids=[f"{thread}-m{seq}" for seq in range(first, last + 1)],
    )
    return position, event


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, str, int, int]]:
    """Commits (thread, run, first, last), each placed against the thread's previous one."""
    out: list[tuple[str, str, int, int]] = []
    last_of: dict[str, tuple[str, int, int]] = {}
    for _ in range(draw(st.integers(1, 12))):
        thread = draw(st.sampled_from(["t1", "t2"]))
        run = draw(st.sampled_from(["r1", "r2", "r3"]))
        size = draw(st.integers(1, 4))
        move = draw(st.sampled_from(MOVES))
        prev_run, prev_first, prev_last = last_of.get(thread, (run, 1, 0))
        first = {
            "touch": prev_last + 1,
            "overlap": max(1, prev_last - draw(st.integers(0, 3))),
            "cover_all": 1,
            "gap": prev_last + 2 + draw(st.integers(0, 2)),
            "repeat": prev_first,
            "replace": prev_first,
            "same_start_other_run": prev_first,
            "below_one": draw(st.integers(-2, 0)),
        }[move]
        last = first + size - 1
        if move == "cover_all":
            last = max(prev_last, 1) + size - 1
        elif move == "repeat":
            run, last = prev_run, max(prev_last, prev_first)
        elif move == "replace":
            run = prev_run
        elif move == "same_start_other_run":
            run = next(r for r in ("r1", "r2", "r3") if r != prev_run)
        out.append((thread, run, first, last))
        if last >= first:
            last_of[thread] = (run, first, last)
    return out


def _spans(seqs: set[int]) -> list[dict[str, int]]:
    out: list[dict[str, int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1]["last"] + 1:
            out[-1]["last"] = seq
        else:
            out.append({"first": seq, "last": seq})
    return out


def expected_rows(history: list[tuple[int, tuple[str, str, int, int]]]) -> dict[str, dict[Any, dict[str, Any]]]:
    """The view's rows by the oracle: the last write of each (thread, run, start) wins; a thread's
    summary counts the seqs of its surviving ranges one by one."""
    ranges: dict[tuple[str, str, int], dict[str, Any]] = {}
    for position, (thread, run, first, last) in history:
        ranges[(thread, run, first)] = {
            "thread_id": thread, "run_id": run, "seq_start": first, "seq_end": last,
            "message_count": max(last - first + 1, 0),
            "message_ids": [f"{thread}-m{s}" for s in range(first, last + 1)],
            "checkpointed_at": 1_000 + position, "position": position,
        }  # fmt: skip
    threads: dict[Any, dict[str, Any]] = {}
    for thread in sorted({key[0] for key in ranges}):
        held = [r for key, r in ranges.items() if key[0] == thread]
        counts = Counter(s for r in held for s in range(r["seq_start"], r["seq_end"] + 1))
        through = max(r["seq_end"] for r in held)
        gaps = _spans({s for s in range(1, through + 1) if counts[s] == 0})
        overlaps = _spans({s for s, n in counts.items() if n > 1})
        threads[(thread,)] = {
            "thread_id": thread, "high_water": 0, "checkpointed_through": through, "range_count": len(held),
            "gaps": gaps, "overlaps": overlaps, "has_gaps": bool(gaps), "has_overlaps": bool(overlaps),
        }  # fmt: skip
    return {
        checkpoint_ranges.RANGES: dict(ranges),
        checkpoint_ranges.THREADS: threads,
    }


def keyed(store: MemoryViewStore) -> dict[str, dict[Any, dict[str, Any]]]:
    out: dict[str, dict[Any, dict[str, Any]]] = {}
    for table in checkpoint_ranges.VIEW.tables:
        out[table.name] = {tuple(row[k] for k in table.key): dict(row) for row in store.select(table.name)}
    return out


def check_checkpoint_rows(history: list[tuple[str, str, int, int]], cuts: list[int], twice: bool) -> None:
    """Feeds the history in batches cut at ``cuts`` (each delivered twice when ``twice``) and
    compares every row with the oracle's."""
    pairs = [_checkpoint(i, *commit) for i, commit in enumerate(history, start=1)]
    store = MemoryViewStore(checkpoint_ranges.VIEW)
    start = 0
    for cut in [*sorted(set(cuts)), len(pairs)]:
        batch = pairs[start:cut]
        if batch:
            store.apply(batch + batch if twice else batch)
        start = max(start, cut)
    got, want = keyed(store), expected_rows(list(enumerate(history, start=1)))
    assert got[checkpoint_ranges.RANGES] == want[checkpoint_ranges.RANGES], f"range rows differ: {history}"
    for key, row in want[checkpoint_ranges.THREADS].items():
        assert got[checkpoint_ranges.THREADS].get(key) == row, f"thread row {key} differs: {history}"
    assert set(got[checkpoint_ranges.THREADS]) == set(want[checkpoint_ranges.THREADS])


CHECKPOINT_HISTORIES = {
    "history": histories(),
    "cuts": st.lists(st.integers(1, 12), max_size=4),
    "twice": st.booleans(),
}


@share(1.0)
@example(history=[("t1", "r1", 3, 4), ("t1", "r1", 3, 5)], cuts=[], twice=False)  # seqs 1-2 a gap, then replaced
@example(history=[("t1", "r1", 1, 2), ("t1", "r2", 3, 4), ("t1", "r3", 1, 4)], cuts=[], twice=False)  # touching
@given(**CHECKPOINT_HISTORIES)
def test_checkpoint_rows_are_the_seq_by_seq_count_of_ranges_that_touch_overlap_gap_and_repeat(
    history: list[tuple[str, str, int, int]], cuts: list[int], twice: bool
) -> None:
    check_checkpoint_rows(history, cuts, twice)


def test_a_decision_with_no_suspension_in_the_log_gets_a_ticket_row_of_its_own() -> None:
    """A log written elsewhere may hold a decision whose suspension it lacks: the ticket still
    gets its row, resolved by that decision, with what the log does not say left empty."""
    event = MailboxDecisionReceived(
        originator_id=uuid5(NAMESPACE_URL, "run/r9"), originator_version=3, timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        run_id="r9", thread_id="t9", now=7_000, dispatch_id="d9", tool_call_id="c9", decision_id="x9",
        action="resume", resume_updated_at=0, delivery_path="remote_live",
    )  # fmt: skip
    store = MemoryViewStore(permission_resolutions.VIEW)
    store.apply([(5, event), (5, event)])
    (row,) = store.select(permission_resolutions.TABLE)
    assert row == {
        "run_id": "r9", "tool_call_id": "c9", "thread_id": "t9", "tool_name": None, "status": "resolved",
        "approved": None, "decision_id": "x9", "action": "resume", "reason": None, "delivery_path": "remote_live",
        "dispatch_id": "d9", "requested_at": None, "resolved_at": 7_000, "requested_position": 5, "ticket_index": 0,
    }  # fmt: skip
