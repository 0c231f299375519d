"""View: the canonical event feed, one row per rendered envelope, keyed by log position.

A row is the envelope ``render`` gives for the event at its position, so re-applying an
event overwrites its row with the same values.
"""

from __future__ import annotations

from run_mailbox.domain.dispatch import Dispatch
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.run_events import RunEvent
from run_mailbox.domain.thread_log import ThreadMessage
from run_mailbox.projections.canonical import CanonicalEvent, render_json
from run_mailbox.projections.schema import Column, Document, Table
from run_mailbox.projections.view import ViewStore, ViewTx

TABLE = "canonical_feed"

_TABLE = Table(
    name=TABLE,
    columns=(
        Column("position", "int", nullable=False),
        Column("kind", "text", nullable=False),
        Column("upstream", "bool", nullable=False),
        Column("thread_id", "text", nullable=False),
        Column("run_id", "text", nullable=False),
        Column("idempotency_key", "text", nullable=False),
        Column("created_at", "int", nullable=False),
        Column("envelope", "json", nullable=False),
    ),
    key=("position",),
    indexes=(("upstream", "position"), ("thread_id", "position")),
)


class CanonicalFeedView:
    name: str = "canonical_feed"
    tables: tuple[Table, ...] = (_TABLE,)
    handles: tuple[type[DomainEvent], ...] = (Dispatch.Event, RunEvent, ThreadMessage.MessageCommitted)

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None:
        envelope = render_json(event, position)
        if envelope is None:
            return
        tx.upsert(
            TABLE,
            {
                "position": position,
                "kind": envelope["kind"],
                "upstream": envelope["upstream"],
                "thread_id": envelope["thread_id"],
                "run_id": envelope["run_id"],
                "idempotency_key": envelope["idempotency_key"],
                "created_at": envelope["created_at"],
                "envelope": Document(envelope),  # built here from JSON values, for this row alone
            },
        )


VIEW = CanonicalFeedView()


# ---------------------------------------------------------------------- queries


def feed(store: ViewStore, after: int = 0, limit: int = 500, upstream_only: bool = False) -> list[CanonicalEvent]:
    """Up to ``limit`` envelopes after log position ``after``, in log order (only the kinds
    the upstream records when ``upstream_only``)."""
    where = {"upstream": True} if upstream_only else None
    rows = store.select(TABLE, where, order_by=("position",), limit=limit, above={"position": after})
    return [CanonicalEvent.model_validate(row["envelope"]) for row in rows]
