"""Every view's rows as the reference model computes them, with no view code involved.

``expected_views(model)`` gives, for the dispatch queue, the run status, the permission
resolutions and the checkpoint ranges, each table's rows keyed by the table's key. The rows come
from the model's records (checked against the oracle after every command), the facts the model
keeps (decisions, commits) and the log positions it saw each fact written at. Statuses are the
spec's words, written out here, not read from the code's enums.
"""

from __future__ import annotations

from typing import Any

from tests.properties._model import Model

Rows = dict[str, dict[tuple[Any, ...], dict[str, Any]]]

DISPATCH_TEXT = {
    "QUEUED": "queued",
    "CLAIMED": "claimed",
    "ACKED": "acked",
    "CANCELLED": "cancelled",
    "SUPERSEDED": "superseded",
    "DEAD_LETTER": "dead_letter",
}
RUN_TEXT = {"CREATED": "created", "RUNNING": "running", "WAITING": "waiting", "DONE": "done"}


def _termination(t: Any) -> dict[str, Any] | None:
    if t is None:
        return None
    return {"type": t.type} if t.value is None else {"type": t.type, "value": t.value}


def dispatch_queue(m: Model) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = {}
    for d in m.dispatches.values():
        rows[(d.dispatch_id,)] = {
            "dispatch_id": d.dispatch_id, "thread_id": d.thread_id, "run_id": d.run_id,
            "status": DISPATCH_TEXT[d.status.name], "priority": d.priority, "dispatch_epoch": d.dispatch_epoch,
            "created_at": d.created_at, "available_at": d.available_at, "updated_at": d.updated_at,
            "completed_at": d.completed_at, "lease_until": d.lease_until, "claimed_by": d.claimed_by,
            "attempt_count": d.attempt_count, "max_attempts": d.max_attempts, "last_error": d.last_error,
            "position": m.positions.dispatch[d.dispatch_id],
        }  # fmt: skip
    return rows


def run_status(m: Model) -> dict[tuple[Any, ...], dict[str, Any]]:
    rows = {}
    for r in m.runs.values():
        last = m.positions.run_last_dispatch.get(r.run_id)
        rows[(r.run_id,)] = {
            "run_id": r.run_id, "thread_id": r.thread_id, "agent_id": r.agent_id, "status": RUN_TEXT[r.status.name],
            "waiting_reason": r.waiting_reason, "dispatch_id": r.dispatch_id,
            "attempts": m.dispatches[last].attempt_count if last else 0,
            "termination": _termination(r.termination), "error": r.error, "created_at": r.created_at,
            "started_at": r.started_at, "finished_at": r.finished_at, "updated_at": r.updated_at,
            "position": m.positions.run[r.run_id], "dispatch_position": m.positions.run_dispatch[r.run_id],
        }  # fmt: skip
    return rows


def permission_resolutions(m: Model, tool_names: dict[tuple[str, str], str]) -> dict[tuple[Any, ...], dict[str, Any]]:
    decided = {(run_id, tool): (decision_id, resume) for (run_id, decision_id), (tool, resume) in m.decisions.items()}
    rows = {}
    for (run_id, tool), (position, index, dispatch_id, at) in m.positions.ticket.items():
        run = m.runs[run_id]
        row: dict[str, Any] = {
            "run_id": run_id, "tool_call_id": tool, "thread_id": run.thread_id, "tool_name": tool_names[(run_id, tool)],
            "status": "pending", "approved": None, "decision_id": None, "action": None, "reason": None,
            "delivery_path": None, "dispatch_id": dispatch_id, "requested_at": at, "resolved_at": None,
            "requested_position": position, "ticket_index": index,
        }  # fmt: skip
        if (run_id, tool) in decided:
            decision_id, resume = decided[(run_id, tool)]
            decided_at, path, written = m.decision_facts[(run_id, decision_id)]
            approved = resume.result.get("approved") if isinstance(resume.result, dict) else None
            approved = approved if isinstance(approved, bool) else None
            status = "cancelled" if resume.action == "cancel" else "resolved"
            if approved is not None:
                status = "approved" if approved else "denied"
            row.update(status=status, approved=approved, decision_id=decision_id, action=resume.action)
            row.update(reason=resume.reason, delivery_path=path, dispatch_id=written, resolved_at=decided_at)
        elif run.finished_at is not None:
            row.update(status="abandoned", resolved_at=run.finished_at)
        rows[(run_id, tool)] = row
    return rows


def checkpoint_ranges(m: Model) -> Rows:
    ranges: dict[tuple[Any, ...], dict[str, Any]] = {}
    threads: dict[tuple[Any, ...], dict[str, Any]] = {}
    for thread, run_id, first, ids, at in m.checkpoints:
        ranges[(thread, run_id, first)] = {
            "thread_id": thread, "run_id": run_id, "seq_start": first, "seq_end": first + len(ids) - 1,
            "message_count": len(ids), "message_ids": list(ids), "checkpointed_at": at,
            "position": m.positions.checkpoint[(thread, run_id, first)],
        }  # fmt: skip
        count = m.committed[thread]
        threads[(thread,)] = {
            "thread_id": thread, "high_water": count, "checkpointed_through": count,
            "range_count": sum(1 for c in m.checkpoints if c[0] == thread),
            "gaps": [], "overlaps": [], "has_gaps": False, "has_overlaps": False,
        }  # fmt: skip
    return {"checkpoint_ranges": ranges, "checkpoint_threads": threads}


def expected_views(m: Model, tool_names: dict[tuple[str, str], str]) -> dict[str, Rows]:
    return {
        "dispatch_queue": {"dispatch_queue": dispatch_queue(m)},
        "run_status": {"run_status": run_status(m)},
        "permission_resolutions": {"permission_resolutions": permission_resolutions(m, tool_names)},
        "checkpoint_ranges": checkpoint_ranges(m),
    }


def actual_rows(store: Any) -> Rows:
    """A view store's rows, keyed by each table's key."""
    return {
        table.name: {tuple(row[k] for k in table.key): dict(row) for row in store.select(table.name)}
        for table in store.view.tables
    }


def compare(name: str, got: Rows, want: Rows) -> None:
    for table, rows in want.items():
        for key in sorted(set(rows) | set(got[table]), key=repr):
            assert got[table].get(key) == rows.get(key), (
                f"view {name}, table {table}, row {key}: the view holds {got[table].get(key)}, "
                f"the model computes {rows.get(key)}"
            )
