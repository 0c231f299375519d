"""``mailbox demo``: the main job end to end, against a real store, checked against its own log.

A seeded plan submits a few runs on each of a few dozen threads; worker threads claim under
short leases, start, and then ack, nack, dead-letter or abandon each attempt by its seeded
fate; the driver interrupts a few threads part-way and submits fresh runs on some of them
(see :mod:`infrastructure.demo_workers`). Some runs first ask for tool permissions, which a
simulated reviewer approves or denies, some decisions delivered twice (see
:mod:`infrastructure.demo_reviewer`); runs checkpoint their messages as they go. When every
run is done the demo prints a summary and checks it against the event log: the canonical
events are counted by kind and compared with what the workers, the reviewer and the driver
did and with the dispatch index.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
from psycopg import sql
from rich.console import Console
from rich.table import Table

from domain.errors import MailboxError
from domain.values import DispatchStatus, RunStatus
from infrastructure.cli import canonical_log, postgres_conninfo
from infrastructure.demo_workers import Driver, Tally, make_plan
from infrastructure.dispatch_commands import FENCED_AT, SUPERSEDED_BY_INTERRUPT
from infrastructure.permission_commands import RUN_FINISHED_FIRST
from infrastructure.service import MailboxService
from infrastructure.settings import POSTGRES, SQLITE, SettingsError, describe, sqlite_env

# How the log says why a dispatch was superseded (spec payloads 9), grouped as the demo counts them.
SUPERSEDED_HOW = {
    SUPERSEDED_BY_INTERRUPT: "queued",
    FENCED_AT["reclaim"]: "at_reclaim",
    RUN_FINISHED_FIRST: "finished_first",
    **{FENCED_AT[c]: "on_write" for c in ("record_start", "ack", "nack", "dead_letter", "suspend")},
}

# ---------------------------------------------------------------------- the store


@contextlib.contextmanager
def demo_store(env: Mapping[str, str] | None, keep: bool, console: Console) -> Iterator[dict[str, str]]:
    """A fresh store for one demo: a temporary SQLite file when ``env`` is None, a new schema
    when ``env`` is Postgres, else ``env`` itself (open_service refuses it if it holds events)."""
    if env is None:
        folder = Path(tempfile.mkdtemp(prefix="mailbox-demo-"))
        try:
            yield sqlite_env(folder / "mailbox.db")
        finally:
            if keep:
                console.print(f"kept the SQLite log: --db {folder / 'mailbox.db'}", highlight=False, soft_wrap=True)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        return
    if not is_postgres(env):
        yield dict(env)
        return
    schema = f"mailbox_demo_{uuid.uuid4().hex[:12]}"
    _execute(env, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield {**env, "POSTGRES_SCHEMA": schema}
    finally:
        if keep:
            console.print(f"kept the Postgres log: POSTGRES_SCHEMA={schema}", highlight=False, soft_wrap=True)
        else:
            _execute(env, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def is_postgres(env: Mapping[str, str]) -> bool:
    return env.get("PERSISTENCE_MODULE", "").startswith(POSTGRES)


def where(env: Mapping[str, str]) -> str:
    schema = env.get("POSTGRES_SCHEMA") if is_postgres(env) else None
    return describe(env) + (f" (schema {schema})" if schema else "")


def _execute(env: Mapping[str, str], statement: sql.Composed) -> None:
    with psycopg.connect(postgres_conninfo(env), autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement)


def open_service(env: Mapping[str, str], workers: int) -> MailboxService:
    """The demo's service; refuses a store that already holds events (the checks must be exact)."""
    if is_postgres(env):
        env = {"POSTGRES_POOL_SIZE": str(workers + 2), "POSTGRES_MAX_OVERFLOW": str(workers + 2), **env}
    service = MailboxService(env=env)
    if service.recorder.max_notification_id():
        service.close()
        hint = " (pick a new --db path)" if env.get("PERSISTENCE_MODULE", "").startswith(SQLITE) else ""
        raise SettingsError(f"the demo needs an empty store, but {describe(env)} already holds events{hint}")
    return service


# ---------------------------------------------------------------------- check and summary


def log_counts(service: MailboxService) -> Counter[str]:
    """Canonical events in the whole log by kind; by ``kind/reason`` where they give a reason,
    ``RunFinished/<termination>``, ``ToolPermissionResolved/approved=<bool>``, and the
    tickets of ``RunSuspended``."""
    counts: Counter[str] = Counter()
    for event in canonical_log(service):
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


# ---------------------------------------------------------------------- the command


def run_demo(
    console: Console,
    env: Mapping[str, str] | None,
    *,
    threads: int,
    workers: int,
    seed: int,
    time_limit: float,
    keep: bool = False,
) -> int:
    """Runs the demo; returns the exit status (0 when it finished and the log agrees)."""
    plan = make_plan(threads, seed)
    with demo_store(env, keep, console) as store:
        service = open_service(store, workers)
        try:
            console.print(f"demo: {len(plan.runs)} runs on {threads} threads, {workers} workers, seed {seed}")
            console.print(f"log: {where(store)}", highlight=False, soft_wrap=True)
            started = time.monotonic()
            driver = Driver(service, plan, workers, seed)
            finished = driver.run(console, time_limit)
            return _report(console, service, driver, finished, time.monotonic() - started, time_limit)
        finally:
            service.close()


def _report(
    console: Console, service: MailboxService, driver: Driver, finished: bool, elapsed: float, limit: float
) -> int:
    failure = driver.failure()
    if failure is not None:
        console.print(f"[red]a worker failed: {type(failure).__name__}: {failure}[/]")
        return 1
    statuses = service.count_by_status()
    ends = resumed_ends(service, driver.reviewer.resumed_runs)
    events = service.recorder.max_notification_id() or 0
    console.print(summary_table(driver.tally, statuses, ends, events, elapsed))
    if not finished:
        left = statuses[DispatchStatus.QUEUED] + statuses[DispatchStatus.CLAIMED]
        console.print(f"[red]time limit of {limit:g} s reached with {left} dispatches unfinished[/]")
        return 1
    checks = expectations(driver.tally, statuses, log_counts(service))
    checks.append(("no run left undone", 0, runs_not_done(service, driver.run_ids)))
    mismatches = [(what, want, got) for what, want, got in checks if want != got]
    if mismatches:
        console.print("[red]checked against the log: MISMATCH[/]")
        for what, want, got in mismatches:
            console.print(f"[red]  {what}: expected {want}, the log has {got}[/]")
        return 1
    console.print(f"[green]checked against the log: OK[/] ({len(checks)} counts agree)")
    return 0
