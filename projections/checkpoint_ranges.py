"""View: each thread's checkpointed message ranges, its committed high-water mark, and the
gaps and overlaps between the ranges.

Range rows are keyed by (thread_id, run_id, seq_start), so a re-applied checkpoint overwrites
its own row. The thread row is a function of the set of the thread's ranges (gaps, overlaps,
count, last end) and of ``max`` (high-water), so re-applying any event leaves it as it was.

A checkpoint adds its range to the thread row without reading the thread's other ranges (the
covered seqs up to ``checkpointed_through`` are the ones not in ``gaps``), so each event costs
the same however many ranges the thread has. Only a range that replaces a different one under
the same key, or that starts below seq 1, recomputes the row from all the thread's ranges.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from run_mailbox.domain.messages import MessageSeqRange
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.run_events import ThreadMessagesCheckpointed
from run_mailbox.domain.thread_log import ThreadMessage
from run_mailbox.projections.schema import Table, table_of
from run_mailbox.projections.view import ViewStore, ViewTx

RANGES = "checkpoint_ranges"
THREADS = "checkpoint_threads"


class CheckpointRangeRow(BaseModel):
    """One checkpointed range: the seqs ``seq_start``..``seq_end`` of a thread, recorded by a run."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    run_id: str
    seq_start: int
    seq_end: int
    message_count: int
    message_ids: list[str]
    checkpointed_at: int
    position: int


class ThreadCheckpointsRow(BaseModel):
    """A thread's summary: the highest committed seq, how far the ranges reach, and their gaps and overlaps."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    high_water: int
    checkpointed_through: int
    range_count: int
    gaps: list[MessageSeqRange]
    overlaps: list[MessageSeqRange]
    has_gaps: bool
    has_overlaps: bool


_RANGES = table_of(
    CheckpointRangeRow, RANGES, key=("thread_id", "run_id", "seq_start"), indexes=(("thread_id", "seq_start"),)
)
_THREADS = table_of(ThreadCheckpointsRow, THREADS, key=("thread_id",), indexes=(("has_gaps",),))


Span = tuple[int, int]  # inclusive (first, last)


def _canonical(spans: Iterable[Span]) -> list[Span]:
    """The same seqs as sorted, disjoint, non-adjacent spans (empty spans dropped)."""
    out: list[Span] = []
    for first, last in sorted(span for span in spans if span[0] <= span[1]):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _without(first: int, last: int, spans: Sequence[Span]) -> list[Span]:
    """The seqs from ``first`` to ``last`` that sorted ``spans`` do not cover."""
    out: list[Span] = []
    start = first
    for a, b in spans:
        if a > last:
            break
        if a > start:
            out.append((start, a - 1))
        start = max(start, b + 1)
    if start <= last:
        out.append((start, last))
    return out


def _stored(spans: list[Span]) -> list[dict[str, int]]:
    return [{"first": a, "last": b} for a, b in spans]


def _read(spans: list[dict[str, int]]) -> list[Span]:
    return [(s["first"], s["last"]) for s in spans]


def _spans(ranges: list[dict[str, Any]]) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
    """Holes (seqs from 1 up to the last range's end that no range covers) and overlaps
    (seqs covered by more than one range), each as sorted inclusive {first, last} spans."""
    covered: list[Span] = []
    overlaps: list[Span] = []
    reach: int | None = None  # the highest seq the ranges seen so far cover
    for start, end in sorted((r["seq_start"], r["seq_end"]) for r in ranges):
        if end < start:
            continue
        if reach is not None and start <= reach:  # sorted by start: the earlier ranges cover start..reach
            overlaps.append((start, min(end, reach)))
        reach = end if reach is None else max(reach, end)
        covered.append((start, end))
    through = max(r["seq_end"] for r in ranges)
    return _stored(_without(1, through, _canonical(covered))), _stored(_canonical(overlaps))


def _add_range(row: dict[str, Any], start: int, end: int) -> None:
    """The thread row with one more range ``start``..``end`` (``start`` >= 1), from the row alone."""
    through = row["checkpointed_through"]
    covered = _without(1, through, _read(row["gaps"]))  # no range covers a seq above ``through``
    overlaps = _read(row["overlaps"])
    if start <= end:
        overlaps = _canonical(
            [*overlaps, *((max(a, start), min(b, end)) for a, b in covered if a <= end and b >= start)]
        )
        covered = _canonical([*covered, (start, end)])
    through = end if row["range_count"] == 0 else max(through, end)
    gaps = _without(1, through, covered)
    row.update(
        checkpointed_through=through,
        range_count=row["range_count"] + 1,
        gaps=_stored(gaps),
        overlaps=_stored(overlaps),
        has_gaps=bool(gaps),
        has_overlaps=bool(overlaps),
    )


def _range_key(event: ThreadMessagesCheckpointed) -> tuple[str, str, int]:
    return (event.thread_id, event.run_id, event.message_seq_start)


def _thread_row(tx: ViewTx, thread_id: str) -> dict[str, Any]:
    row = tx.get(THREADS, (thread_id,))
    if row is not None:
        return dict(row)
    return {
        "thread_id": thread_id,
        "high_water": 0,
        "checkpointed_through": 0,
        "range_count": 0,
        "gaps": [],
        "overlaps": [],
        "has_gaps": False,
        "has_overlaps": False,
    }


class CheckpointRangesView:
    name: str = "checkpoint_ranges"
    tables: tuple[Table, ...] = (_RANGES, _THREADS)
    handles: tuple[type[DomainEvent], ...] = (ThreadMessage.MessageCommitted, ThreadMessagesCheckpointed)

    def prefetch(self, batch: Sequence[tuple[int, DomainEvent]]) -> dict[str, set[tuple[Any, ...]]]:
        """The rows ``handle`` reads: the thread row of every message and checkpoint, and the range
        row a checkpoint writes (to tell a new range from one applied already)."""
        threads: set[tuple[Any, ...]] = set()
        ranges: set[tuple[Any, ...]] = set()
        for _, event in batch:
            if isinstance(event, ThreadMessage.MessageCommitted):
                threads.add((event.message.thread_id,))
            elif isinstance(event, ThreadMessagesCheckpointed):
                threads.add((event.thread_id,))
                ranges.add(_range_key(event))
        return {THREADS: threads, RANGES: ranges}

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None:
        if isinstance(event, ThreadMessage.MessageCommitted):
            message = event.message
            row = _thread_row(tx, message.thread_id)
            row["high_water"] = max(row["high_water"], message.message_seq)
            tx.upsert(THREADS, row)
        elif isinstance(event, ThreadMessagesCheckpointed):
            before = tx.get(RANGES, _range_key(event))
            tx.upsert(
                RANGES,
                {
                    "thread_id": event.thread_id,
                    "run_id": event.run_id,
                    "seq_start": event.message_seq_start,
                    "seq_end": event.message_seq_end,
                    "message_count": event.message_count,
                    "message_ids": list(event.message_ids),
                    "checkpointed_at": event.now,
                    "position": position,
                },
            )
            start, end = event.message_seq_start, event.message_seq_end
            if before is not None and before["seq_end"] == end:
                return  # the same range again: the thread row counts it already
            if before is not None or start < 1:  # a range replaced, or seqs below 1 (which ``gaps`` does not map)
                self._summarise(tx, event.thread_id)
                return
            row = _thread_row(tx, event.thread_id)
            _add_range(row, start, end)
            tx.upsert(THREADS, row)

    @staticmethod
    def _summarise(tx: ViewTx, thread_id: str) -> None:
        ranges = tx.rows(RANGES, {"thread_id": thread_id})
        gaps, overlaps = _spans(ranges)
        row = _thread_row(tx, thread_id)
        row.update(
            checkpointed_through=max(r["seq_end"] for r in ranges),
            range_count=len(ranges),
            gaps=gaps,
            overlaps=overlaps,
            has_gaps=bool(gaps),
            has_overlaps=bool(overlaps),
        )
        tx.upsert(THREADS, row)


VIEW = CheckpointRangesView()


# ---------------------------------------------------------------------- queries


def ranges_of_thread(store: ViewStore, thread_id: str) -> list[CheckpointRangeRow]:
    """The thread's checkpointed ranges in seq order (each row names its run)."""
    rows = store.select(RANGES, {"thread_id": thread_id}, order_by=("seq_start", "run_id"))
    return [CheckpointRangeRow.model_validate(row) for row in rows]


def run_for_seq(store: ViewStore, thread_id: str, seq: int) -> str | None:
    """The run whose checkpoint covers ``seq`` (the earliest recorded one if ranges overlap)."""
    covering = [r for r in ranges_of_thread(store, thread_id) if r.seq_start <= seq <= r.seq_end]
    if not covering:
        return None
    return min(covering, key=lambda r: r.position).run_id


def thread_summary(store: ViewStore, thread_id: str) -> ThreadCheckpointsRow | None:
    """High-water mark, checkpointed-through seq, gaps and overlaps of one thread."""
    rows = store.select(THREADS, {"thread_id": thread_id}, limit=1)
    return ThreadCheckpointsRow.model_validate(rows[0]) if rows else None


def threads_with_gaps(store: ViewStore) -> list[str]:
    """Threads with a seq between 1 and their last checkpointed seq that no range covers."""
    return [r["thread_id"] for r in store.select(THREADS, {"has_gaps": True}, order_by=("thread_id",))]
