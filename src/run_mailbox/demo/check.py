"""The demo's check: the canonical log counted by kind, compared with what the workers, the reviewer and
the driver did and with the dispatch index."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from run_mailbox.demo.workers import Tally
from run_mailbox.domain.errors import MailboxError
from run_mailbox.domain.reasons import FENCED_AT, RUN_FINISHED_FIRST, SUPERSEDED_BY_INTERRUPT
from run_mailbox.domain.values import DispatchStatus, RunStatus
from run_mailbox.infrastructure.service import MailboxService

# How the log says why a dispatch was superseded (spec payloads 9), grouped as the demo counts them.
SUPERSEDED_HOW = {
    SUPERSEDED_BY_INTERRUPT: "queued",
    FENCED_AT["reclaim"]: "at_reclaim",
    RUN_FINISHED_FIRST: "finished_first",
    **{FENCED_AT[c]: "on_write" for c in ("record_start", "ack", "nack", "dead_letter", "suspend")},
}


def log_counts(service: MailboxService) -> Counter[str]:
    """Canonical events in the whole log by kind; by ``kind/reason`` where they give a reason,
    ``RunFinished/<termination>``, ``ToolPermissionResolved/approved=<bool>``, and the
    tickets of ``RunSuspended``."""
    counts: Counter[str] = Counter()
    for event in service.iter_canonical_events():
        kind, payload = event.kind, event.payload
        counts[kind] += 1
        if "approved" in payload:
            counts[f"{kind}/approved={payload['approved']}"] += 1
        elif payload.get("reason") is not None:
            counts[f"{kind}/{SUPERSEDED_HOW.get(payload['reason'], payload['reason'])}"] += 1
        if kind == "RunFinished":
            counts[f"{kind}/{payload['termination']['type']}"] += 1
        if kind == "RunSuspended":
            counts[f"{kind} tickets"] += len(payload["tickets"])
    return counts


def runs_not_done(service: MailboxService, run_ids: list[str]) -> int:
    """How many of the demo's runs are not done in the store (none should be)."""
    left = 0
    for run_id in run_ids:
        try:
            left += service.get_run(run_id).status is not RunStatus.DONE
        except MailboxError:
            left += 1
    return left


def expectations(tally: Tally, statuses: Mapping[str, int], log: Counter[str]) -> list[tuple[str, int, int]]:
    """(what, expected from the tally or the dispatch index, counted in the log)."""
    t = tally.counts
    rows = [
        ("RunQueued", t["submitted"] + t["resumes_queued"], "runs submitted + resumes queued"),
        ("RunQueued", sum(statuses.values()), "dispatches in the index"),
        ("RunCreated", t["submitted"], "runs submitted"),
        ("DispatchClaimed", t["claims"], "claims"),
        ("RunSubmitted", t["starts"], "record_start calls"),
        ("RunStarted", len(tally.started_runs), "runs started, once per dispatch"),
        ("DispatchAcked", statuses["acked"], "acked dispatches"),
        ("DispatchAcked", t["acks"] + t["suspensions"], "acks + suspensions"),
        ("RunFinished/natural_end", t["acks"] - t["acks_blocked"], "acks of runs not blocked"),
        ("RunFinished/blocked", t["blocked"], "runs finished blocked after a denial"),
        ("RunSuspended", t["suspensions"], "suspensions"),
        ("RunSuspended tickets", t["tickets"], "permissions asked"),
        ("MailboxDecisionReceived", t["decisions"], "distinct decisions delivered"),
        ("ToolPermissionResolved/approved=True", t["approvals"], "approvals"),
        ("ToolPermissionResolved/approved=False", t["denials"], "denials"),
        ("MessageCommitted", t["messages"], "messages committed"),
        ("ThreadMessagesCheckpointed", t["commits"], "message commits"),
        ("RunRescheduled/retry_backoff", t["nacks_requeued"], "nacks that requeued"),
        ("RunRescheduled/expired_lease_reclaimed", t["reclaims_requeued"], "reclaims that requeued"),
        ("DispatchDeadLettered", statuses["dead_letter"], "dead-lettered dispatches"),
        ("DispatchDeadLettered/permanent_failure", t["dead_letters"], "dead_letter calls"),
        ("DispatchDeadLettered/attempts_exhausted", t["nacks_exhausted"], "nacks on the last attempt"),
        ("DispatchDeadLettered/lease_expired", t["reclaims_exhausted"], "reclaims on the last attempt"),
        ("RunErrored", t["dead_letters"], "dead_letter calls"),
        ("RunSuperseded", statuses["superseded"], "superseded dispatches"),
        ("RunSuperseded/queued", t["superseded_queued"], "queued runs the interrupts superseded"),
        ("RunSuperseded/on_write", t["fenced"], "owner writes refused by the epoch fence"),
        ("RunInterrupted", t["interrupts_active"], "interrupts that found a claimed run"),
        ("RunCancelled", statuses["cancelled"], "cancelled dispatches"),
    ]
    checks = [(f"{kind} = {label}", want, log[kind]) for kind, want, label in rows]
    checks.append(("RunFinished + RunErrored = runs submitted", t["submitted"], log["RunFinished"] + log["RunErrored"]))
    checks += [(f"no dispatch left {s}", 0, statuses[s]) for s in (DispatchStatus.QUEUED, DispatchStatus.CLAIMED)]
    checks.append(("MailboxResumeFailed = none", 0, log["MailboxResumeFailed"]))
    return checks


def resumed_ends(service: MailboxService, run_ids: list[str]) -> Counter[str]:
    """How the resumed runs ended, by termination type, read from the store."""
    ends: Counter[str] = Counter()
    for run_id in run_ids:
        termination = service.get_run(run_id).termination
        ends[termination.type if termination is not None else "not done"] += 1
    return ends
