"""View: each thread's checkpointed message ranges, its committed high-water mark, and the
gaps and overlaps between the ranges.

Range rows are keyed by (thread_id, run_id, seq_start), so a re-applied checkpoint overwrites
its own row. The thread row is recomputed from the thread's range rows (gaps, overlaps) and
from ``max`` (high-water), so re-applying any event leaves it as it was.
"""

from __future__ import annotations

from typing import Any

from domain.model import DomainEvent
from domain.run import Run
from domain.thread_log import ThreadMessage
from projections.schema import Column, Table
from projections.view import ViewTx

RANGES = "checkpoint_ranges"
THREADS = "checkpoint_threads"

_RANGES = Table(
    name=RANGES,
    columns=(
        Column("thread_id", "text", nullable=False),
        Column("run_id", "text", nullable=False),
        Column("seq_start", "int", nullable=False),
        Column("seq_end", "int", nullable=False),
        Column("message_count", "int", nullable=False),
        Column("message_ids", "json", nullable=False),
        Column("checkpointed_at", "int", nullable=False),
        Column("position", "int", nullable=False),
    ),
    key=("thread_id", "run_id", "seq_start"),
    indexes=(("thread_id", "seq_start"),),
)
_THREADS = Table(
    name=THREADS,
    columns=(
        Column("thread_id", "text", nullable=False),
        Column("high_water", "int", nullable=False),
        Column("checkpointed_through", "int", nullable=False),
        Column("range_count", "int", nullable=False),
        Column("gaps", "json", nullable=False),
        Column("overlaps", "json", nullable=False),
        Column("has_gaps", "bool", nullable=False),
        Column("has_overlaps", "bool", nullable=False),
    ),
    key=("thread_id",),
    indexes=(("has_gaps",),),
)


def _spans(ranges: list[dict[str, Any]]) -> tuple[list[dict[str, int]], list[dict[str, int]]]:
    """Holes (seqs from 1 up to the last range's end that no range covers) and overlaps
    (seqs covered by more than one range), each as sorted inclusive {first, last} spans."""
    gaps: list[dict[str, int]] = []
    overlaps: list[dict[str, int]] = []
    next_free = 1  # the lowest seq not yet covered by the ranges seen so far
    for row in sorted(ranges, key=lambda r: (r["seq_start"], r["seq_end"])):
        start, end = row["seq_start"], row["seq_end"]
        if start > next_free:
            gaps.append({"first": next_free, "last": start - 1})
        elif start < next_free:
            overlaps.append({"first": start, "last": min(end, next_free - 1)})
        next_free = max(next_free, end + 1)
    return gaps, _merged(overlaps)


def _merged(spans: list[dict[str, int]]) -> list[dict[str, int]]:
    merged: list[dict[str, int]] = []
    for span in sorted(spans, key=lambda s: (s["first"], s["last"])):
        if merged and span["first"] <= merged[-1]["last"] + 1:
            merged[-1]["last"] = max(merged[-1]["last"], span["last"])
        else:
            merged.append(dict(span))
    return merged


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

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None:
        if isinstance(event, ThreadMessage.MessageCommitted):
            message = event.message
            row = _thread_row(tx, message.thread_id)
            row["high_water"] = max(row["high_water"], message.message_seq)
            tx.upsert(THREADS, row)
        elif isinstance(event, Run.ThreadMessagesCheckpointed):
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
            self._summarise(tx, event.thread_id)

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


def ranges_of_thread(store: Any, thread_id: str) -> list[dict[str, Any]]:
    """The thread's checkpointed ranges in seq order (each row names its run)."""
    return list(store.select(RANGES, {"thread_id": thread_id}, order_by=("seq_start", "run_id")))


def run_for_seq(store: Any, thread_id: str, seq: int) -> str | None:
    """The run whose checkpoint covers ``seq`` (the earliest recorded one if ranges overlap)."""
    covering = [r for r in ranges_of_thread(store, thread_id) if r["seq_start"] <= seq <= r["seq_end"]]
    if not covering:
        return None
    return str(min(covering, key=lambda r: r["position"])["run_id"])


def thread_summary(store: Any, thread_id: str) -> dict[str, Any] | None:
    """High-water mark, checkpointed-through seq, gaps and overlaps of one thread."""
    rows = store.select(THREADS, {"thread_id": thread_id}, limit=1)
    return dict(rows[0]) if rows else None


def threads_with_gaps(store: Any) -> list[str]:
    """Threads with a seq between 1 and their last checkpointed seq that no range covers."""
    return [r["thread_id"] for r in store.select(THREADS, {"has_gaps": True}, order_by=("thread_id",))]
