"""The demo's summary table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from rich.table import Table

from run_mailbox.demo.workers import Tally


def summary_table(tally: Tally, statuses: Mapping[str, int], ends: Counter[str], events: int, elapsed: float) -> Table:
    t = tally.counts
    at_reclaim = statuses["superseded"] - t["superseded_queued"] - t["fenced"]
    resumes_superseded = f" ({t['resumes_superseded']} superseded while queued)" if t["resumes_superseded"] else ""
    table = Table(title="run-mailbox demo")
    table.add_column("")
    table.add_column("count", justify="right")
    table.add_column("detail")
    rows = [
        ("runs submitted", t["submitted"], f"{t['fresh_runs']} fresh after an interrupt"),
        ("  completed", t["acks"] - t["acks_blocked"], f"acked, {t['resumes_completed']} after a permission decision"),
        ("  blocked by a denial", t["acks_blocked"], "finished blocked, then acked"),
        (
            "  dead-lettered",
            statuses["dead_letter"],
            f"{t['dead_letters']} permanent errors, {t['nacks_exhausted']} out of retries, "
            f"{t['reclaims_exhausted']} lease expired on the last attempt",
        ),
        (
            "  superseded by interrupt",
            statuses["superseded"],
            f"{t['superseded_queued']} while queued, {t['fenced']} fenced on the owner's next write, "
            f"{at_reclaim} fenced at lease reclaim",
        ),
        ("  cancelled", statuses["cancelled"], ""),
        ("claims", t["claims"], f"{t['abandoned']} abandoned by a dying worker"),
        ("retries (nacks)", t["nacks_requeued"] + t["nacks_exhausted"], f"{t['nacks_requeued']} requeued with backoff"),
        ("lease reclaims", t["reclaims_requeued"] + t["reclaims_exhausted"], f"{t['reclaims_requeued']} requeued"),
        ("dead letters", statuses["dead_letter"], ""),
        (
            "interrupts",
            t["interrupts"],
            f"{t['interrupts_by_plan']} planned, {t['interrupts_by_reviewer']} right after a resume was queued; "
            f"{t['interrupts_active']} hit a claimed run",
        ),
        ("permissions asked", t["tickets"], f"by {t['suspensions']} runs, suspended until decided"),
        ("  approved", t["approvals"], ""),
        ("  denied", t["denials"], ""),
        ("decisions re-delivered", t["redeliveries"], "by durable_dispatch after remote_live: no-ops, nothing written"),
        (
            "runs resumed",
            t["resumes_queued"],
            "ended " + ", ".join(f"{kind} {n}" for kind, n in sorted(ends.items())) + resumes_superseded,
        ),
        ("messages committed", t["messages"], f"in {t['commits']} checkpoints"),
        ("races handled", sum(tally.races().values()), ", ".join(f"{k} {n}" for k, n in tally.races().items())),
        ("events written", events, ""),
    ]
    for name, count, detail in rows:
        table.add_row(name, str(count), detail)
    table.add_row("elapsed seconds", f"{elapsed:.2f}", "")
    return table
