"""The checkpoint view's thread row is the summary of the thread's ranges, however they arrived.

A checkpoint updates the thread row from the row alone (no read of the thread's other ranges);
these properties check the row against a seq-by-seq count of the ranges the view holds, for
overlapping, empty, repeated and rewritten ranges, and for seqs below 1.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from run_mailbox.projections import checkpoint_ranges
from run_mailbox.projections.checkpoint_ranges import RANGES, THREADS
from tests.projections._dict_tx import DictTx, project
from tests.projections.test_views import checkpointed


def spans(seqs: set[int]) -> list[dict[str, int]]:
    out: list[dict[str, int]] = []
    for seq in sorted(seqs):
        if out and seq == out[-1]["last"] + 1:
            out[-1]["last"] = seq
        else:
            out.append({"first": seq, "last": seq})
    return out


def summary_of(ranges: list[dict[str, Any]]) -> dict[str, Any]:
    """Seq by seq: holes from 1 to the last end, seqs covered twice or more, as maximal spans."""
    counts = Counter(seq for r in ranges for seq in range(r["seq_start"], r["seq_end"] + 1))
    through = max(r["seq_end"] for r in ranges)
    gaps = spans({seq for seq in range(1, through + 1) if counts[seq] == 0})
    overlaps = spans({seq for seq, n in counts.items() if n > 1})
    return {
        "checkpointed_through": through,
        "range_count": len(ranges),
        "gaps": gaps,
        "overlaps": overlaps,
        "has_gaps": bool(gaps),
        "has_overlaps": bool(overlaps),
    }


checkpoints = st.lists(
    st.tuples(st.sampled_from(["r1", "r2", "r3"]), st.integers(-2, 14), st.integers(-3, 16)), min_size=1, max_size=14
)


@given(checkpoints, st.booleans())
def test_the_thread_row_counts_every_seq_the_threads_ranges_cover(ranges, twice):
    pairs = [checkpointed(i, "t", run, first, last) for i, (run, first, last) in enumerate(ranges, start=1)]
    store = project(checkpoint_ranges.VIEW, pairs + pairs if twice else pairs)
    held = store.select(RANGES)
    (thread,) = store.select(THREADS)
    assert {k: thread[k] for k in summary_of(held)} == summary_of(held)


class CountingTx(DictTx):
    def __init__(self, view: Any) -> None:
        super().__init__(view)
        self.scans = 0

    def rows(self, table: str, where: dict[str, Any]) -> list[dict[str, Any]]:
        self.scans += 1
        return super().rows(table, where)


@given(
    st.lists(
        st.tuples(st.sampled_from(["r1", "r2"]), st.integers(1, 30), st.integers(0, 6)),
        min_size=1,
        unique_by=lambda c: c[:2],
    )
)
def test_new_ranges_of_real_shape_are_summarised_without_reading_the_other_ranges(ranges):
    """Ranges as the service writes them (start >= 1, at least one seq, a new key each), in any
    order and overlap: the thread row equals a full recount, and no handler scanned the ranges."""
    pairs = [checkpointed(i, "t", run, first, first + extra) for i, (run, first, extra) in enumerate(ranges, start=1)]
    store = CountingTx(checkpoint_ranges.VIEW).apply(pairs)
    assert store.scans == 0
    held = store.select(RANGES)
    summary = checkpoint_ranges.thread_summary(store, "t")
    assert summary is not None
    assert {k: summary.model_dump()[k] for k in summary_of(held)} == summary_of(held)
