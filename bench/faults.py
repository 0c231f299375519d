"""Fault injection on Postgres: workers keep the run lifecycle going while their connections die.

    .venv/bin/python -m bench.faults [--seconds 60] [--workers 4] [--kills 6] [--restarts 2] [--lock-holds 2]

Workers (one service each, as if separate processes) loop: ``submit`` a run on one of a few shared
threads, ``claim_next``, ``record_start``, ``ack``, every command with an idempotency key. A
command that fails with a typed store error (``StoreTimeout``, ``StoreUnavailable``) is retried
with the same key until it succeeds. Three fault phases, a third of ``--seconds`` each:

1. ``terminate``: ``pg_terminate_backend`` of every connection of this process, ``--kills`` times;
2. ``restart``: ``pg_ctlcluster --skip-systemctl-redirect 15 main restart``, ``--restarts`` times
   (other jobs on the machine lose their connections for a second or two: keep it short);
3. ``lock``: another session holds the events table's EXCLUSIVE lock for longer than
   ``lock_timeout``, ``--lock-holds`` times (the writers' commands end with StoreTimeout).

The recorder retries connection failures itself, so the first two phases may surface few typed
errors or none; the third always does.

Then the workers drain the queue, and the log is checked: runs submitted, acked, lost (submitted
but never terminal) and doubled (acked twice, or two claims overlapping on a thread); both must be
0. Exit status 1 when they are not, or when a command failed with an untyped error.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from bench._common import PG_CONNINFO, PG_DBNAME, ensure_bench_database
from run_mailbox.domain import MailboxError, StoreError
from run_mailbox.infrastructure.invariants import check_invariants
from run_mailbox.infrastructure.service import MailboxService

T = TypeVar("T")
THREADS = 6  # shared conversation threads: claims contend on them
LEASE_MS = 600_000  # no lease expires during the run: a second claim would be a double
GIVE_UP_S = 180.0
LOCK_HOLD_S = 7.0  # longer than the default lock_timeout (5 s)
TERMINAL = {"acked", "dead_lettered", "cancelled", "superseded"}


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    commands: int = 0
    typed: Counter[str] = field(default_factory=Counter)
    untyped: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    submitted: set[str] = field(default_factory=set)


class Worker(threading.Thread):
    def __init__(self, number: int, env: dict[str, str], stats: Stats, submitting: threading.Event) -> None:
        super().__init__(name=f"worker-{number}", daemon=True)
        self.number, self.stats, self.submitting = number, stats, submitting
        self.service = MailboxService(env=env)
        self.stop = threading.Event()
        self.idle_claims = 0

    def call(self, name: str, command: Callable[[], T]) -> T:
        """``command`` until it succeeds: the key stays the same across the attempts."""
        deadline = time.monotonic() + GIVE_UP_S
        while True:
            try:
                result = command()
            except StoreError as exc:
                with self.stats.lock:
                    self.stats.typed[type(exc).__name__] += 1
            except MailboxError as exc:
                with self.stats.lock:
                    self.stats.refused.append(f"{name}: {type(exc).__name__}: {exc}")
                raise
            except Exception as exc:  # counted: the store must only raise typed errors
                with self.stats.lock:
                    self.stats.untyped.append(f"{name}: {type(exc).__module__}.{type(exc).__name__}: {exc}")
            else:
                with self.stats.lock:
                    self.stats.commands += 1
                return result
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} kept failing for {GIVE_UP_S} s")
            time.sleep(0.2)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            try:
                claimed = self.step(f"w{self.number}-{n}", f"thread-{(self.number + n) % THREADS}")
            except MailboxError:
                claimed = False  # a refusal: counted in stats.refused, reported at the end
            self.idle_claims = 0 if claimed else self.idle_claims + 1
            if not claimed:
                time.sleep(0.05)

    def step(self, tag: str, thread: str) -> bool:
        s = self.service
        if self.submitting.is_set():
            dispatch = f"d-{tag}"
            self.call("submit", lambda: s.submit(thread, f"r-{tag}", dispatch_id=dispatch, idempotency_key=f"s-{tag}"))
            with self.stats.lock:
                self.stats.submitted.add(dispatch)
        consumer = f"w{self.number}"
        claims = self.call(
            "claim_next", lambda: s.claim_next(consumer_id=consumer, lease_ms=LEASE_MS, idempotency_key=f"c-{tag}")
        )
        for c in claims:
            key, token = c.dispatch_id, c.claim_token
            assert token is not None
            self.call(
                "record_start",
                lambda key=key, token=token: s.record_start(key, claim_token=token, idempotency_key=f"st-{key}"),
            )
            self.call("ack", lambda key=key, token=token: s.ack(key, claim_token=token, idempotency_key=f"a-{key}"))
        return bool(claims)


def terminate_ours(app_name: str) -> int:
    with psycopg.connect(f"{PG_CONNINFO} dbname=postgres application_name=faults-admin", autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", [app_name]
        ).fetchall()
    return len(rows)


def restart_postgres() -> float:
    started = time.monotonic()
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", "restart"], check=True, timeout=120)
    while time.monotonic() - started < 60:
        try:
            psycopg.connect(f"{PG_CONNINFO} dbname=postgres", connect_timeout=2).close()
            break
        except psycopg.Error:
            time.sleep(0.2)
    return time.monotonic() - started


def hold_events_lock(schema: str, seconds: float) -> str:
    with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME} application_name=faults-admin") as conn:
        conn.execute(sql.SQL("LOCK TABLE {}.mailboxservice_events IN EXCLUSIVE MODE").format(sql.Identifier(schema)))
        time.sleep(seconds)
        conn.rollback()
    return f"held {seconds:.0f} s"


def run_phase(name: str, seconds: float, faults: int, inject: Callable[[], Any]) -> list[Any]:
    """``faults`` injections spread evenly over ``seconds``."""
    results, started = [], time.monotonic()
    for i in range(faults):
        time.sleep(max(0.0, started + seconds * (i + 1) / (faults + 1) - time.monotonic()))
        results.append(inject())
        print(f"  {name} #{i + 1}: {results[-1]}", flush=True)
    time.sleep(max(0.0, started + seconds - time.monotonic()))
    return results


def check_log(service: MailboxService) -> tuple[Counter[str], Counter[str], int]:
    """Acks per dispatch, claims per dispatch, and claims that overlapped another on their thread."""
    acks: Counter[str] = Counter()
    claims: Counter[str] = Counter()
    holder: dict[str, str | None] = {}
    overlaps, after = 0, 0
    while True:
        page = service.canonical_events(after=after, limit=1000)
        head = service.recorder.max_notification_id() or 0
        for e in page:
            dispatch, thread, status = (e.payload.get(k) for k in ("dispatch_id", "thread_id", "status"))
            if e.kind == "DispatchAcked":
                acks[dispatch] += 1
            if e.kind == "DispatchClaimed":
                claims[dispatch] += 1
                if holder.get(thread) not in (None, dispatch):
                    overlaps += 1
                holder[thread] = dispatch
            elif status is not None and status != "claimed" and holder.get(thread) == dispatch:
                holder[thread] = None
        after = page[-1].position if page else after + 1000
        if after >= head:
            return acks, claims, overlaps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--lock-holds", type=int, default=2)
    args = parser.parse_args()
    ensure_bench_database()
    app_name = f"mailbox-faults-{uuid.uuid4().hex[:8]}"
    os.environ["PGAPPNAME"] = app_name  # libpq: every connection of this process carries it
    schema = f"faults_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    env = {"MAILBOX_DATABASE_URL": f"postgresql://postgres@127.0.0.1:5432/{PG_DBNAME}", "POSTGRES_SCHEMA": schema}
    stats, submitting = Stats(), threading.Event()
    submitting.set()
    workers = [Worker(i, env, stats, submitting) for i in range(args.workers)]
    started = time.monotonic()
    for w in workers:
        w.start()
    print(f"schema {schema}, {args.workers} workers, application_name {app_name}", flush=True)
    third = args.seconds / 3
    killed = run_phase("terminate", third, args.kills, lambda: f"{terminate_ours(app_name)} backends")
    restarts = run_phase("restart", third, args.restarts, lambda: f"{restart_postgres():.1f} s")
    holds = run_phase("lock", third, args.lock_holds, lambda: hold_events_lock(schema, LOCK_HOLD_S))
    submitting.clear()
    while any(w.is_alive() and w.idle_claims < 20 for w in workers):  # drain the queue
        time.sleep(0.5)
    for w in workers:
        w.stop.set()
    for w in workers:
        w.join(GIVE_UP_S)
    elapsed = time.monotonic() - started
    checker = MailboxService(env=env)
    acks, claims, overlaps = check_log(checker)
    statuses = {row.dispatch_id: row.status for row in checker.tables.all_dispatches()}
    problems = check_invariants(checker)
    lost = sorted(d for d in stats.submitted if statuses.get(d) not in TERMINAL)
    doubled = sorted(d for d, n in acks.items() if n > 1)
    unknown = sorted(set(statuses) - stats.submitted)
    print(f"\nfaults: {len(killed)} terminate rounds ({', '.join(killed)}), ", end="")
    print(f"{len(restarts)} restarts ({', '.join(restarts)}), {len(holds)} lock holds ({', '.join(holds)})")
    print(f"elapsed {elapsed:.0f} s, commands completed {stats.commands}")
    print(f"runs submitted: {len(stats.submitted)}")
    print(f"runs acked: {sum(1 for d in stats.submitted if statuses.get(d) == 'acked')}")
    print(f"lost (submitted, never terminal): {len(lost)} {lost[:5]}")
    twice = sum(1 for n in claims.values() if n > 1)
    print(f"doubled (acked twice or overlapping claims): {len(doubled) + overlaps} ", end="")
    print(f"(acked twice {len(doubled)}, overlapping claims {overlaps}, dispatches claimed twice {twice})")
    print(f"typed errors retried with the same key: {sum(stats.typed.values())} {dict(stats.typed)}")
    print(f"untyped errors: {len(stats.untyped)} {stats.untyped[:3]}")
    print(f"refusals: {len(stats.refused)} {stats.refused[:3]}")
    print(f"store dispatches not seen as submitted: {len(unknown)}; invariant problems: {len(problems)} {problems[:3]}")
    checker.close()
    for w in workers:
        w.service.close()
    with psycopg.connect(f"{PG_CONNINFO} dbname={PG_DBNAME}", autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    bad = lost or doubled or overlaps or stats.untyped or stats.refused or unknown or problems
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
