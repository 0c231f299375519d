"""Writes a golden log: every event kind and a snapshot of every snapshotted aggregate, as JSON lines.

    python -m tests.golden.write_golden_log tests/golden/<name>

A golden log is written ONCE, by the code of the day, and checked in; ``test_golden_logs.py``
then decodes, folds, exports and projects it on every backend, forever. Never rewrite one:
write a new one beside it when the stored shapes change (and keep every upcaster).

It runs the demo's workload on a SQLite file (seed 7), then the commands the demo never issues
(a lease extension, a cancel, an interrupt of a claimed run and the fence after it, a refused
resume, every termination, every content block), snapshots every Run, ThreadMailbox and
ThreadLog, and dumps the stored events and snapshots with what today's code reads from them:
the canonical export and the record of every dispatch, run and thread mailbox.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from run_mailbox.demo import run_demo
from run_mailbox.domain.errors import MailboxError
from run_mailbox.domain.ids import mailbox_aggregate_id, run_aggregate_id
from run_mailbox.domain.thread_log import thread_log_id
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.settings import sqlite_env

T = "golden-thread"
BLOCKS: list[dict[str, Any]] = [
    {"type": "text", "text": "héllo \u2603 wörld"},
    {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": base64.b64encode(b"png").decode()},
    },
    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
    {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}, "title": "A doc"},
    {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
    {"type": "audio", "source": {"type": "url", "url": "https://example.com/a.mp3"}},
    {"type": "video", "source": {"type": "url", "url": "https://example.com/a.mp4"}},
    {"type": "tool_use", "id": "tu-1", "name": "search", "input": {"q": "x", "n": [1, 2.5, None, True], "deep": {}}},
    {
        "type": "tool_result",
        "tool_use_id": "tu-1",
        "content": [{"type": "text", "text": "result"}, {"type": "tool_result", "tool_use_id": "tu-0", "content": []}],
    },
    {"type": "thinking", "thinking": "hmm"},
]


def extras(svc: MailboxService, advance: Any) -> None:
    """The commands the demo never issues, on threads of their own."""
    svc.submit(T, "golden-run-lease", agent_id="golden-agent", priority=3, dedupe_key="golden-dedupe", max_attempts=7)
    c = svc.claim(T, consumer_id="golden-worker", lease_ms=5_000)
    assert c is not None and c.claim_token is not None
    svc.extend_lease(c.dispatch_id, claim_token=c.claim_token, lease_ms=9_000)
    svc.record_start(c.dispatch_id, claim_token=c.claim_token, instance_id="golden-instance")
    messages = [
        {"message_id": "golden-m1", "role": "user", "content": BLOCKS[:1]},
        {"message_id": "golden-m2", "role": "assistant", "content": BLOCKS, "created_at": 12345},
        {"message_id": "golden-m3", "role": "system", "content": BLOCKS[:1], "visibility": "internal"},
        {"message_id": "golden-m4", "role": "tool", "content": BLOCKS[8:9]},
        {"message_id": "golden-m5", "role": "user", "content": BLOCKS[:1], "visibility": "internal"},
    ]
    svc.commit_messages(T, "golden-run-lease", messages, expected_first_seq=1)  # type: ignore[arg-type]
    svc.ack(c.dispatch_id, claim_token=c.claim_token, idempotency_key="golden-ack")
    cancelled = svc.submit(T, "golden-run-cancel", available_at=99_000_000)
    svc.cancel(cancelled.dispatch_id)
    svc.submit(T, "golden-run-int")
    svc.submit(T, "golden-run-int-queued", priority=200)
    c = svc.claim(T, consumer_id="golden-worker")
    assert c is not None and c.claim_token is not None
    svc.interrupt(T)
    with contextlib.suppress(MailboxError):  # fenced: the dispatch is superseded
        svc.record_start(c.dispatch_id, claim_token=c.claim_token)
    svc.submit(T, "golden-run-perm", dispatch_id="golden-dispatch-perm")
    c = svc.claim(T, consumer_id="golden-worker")
    assert c is not None and c.claim_token is not None
    svc.record_start(c.dispatch_id, claim_token=c.claim_token)
    tickets = [
        {"tool_call_id": "tc-1", "tool_name": "shell", "arguments": {"cmd": "ls", "nested": [{"x": 1}]}},
        {"tool_call_id": "tc-2", "tool_name": "web"},
        {"tool_call_id": "tc-3", "tool_name": "mail", "arguments": ["a", 1]},
    ]
    svc.suspend(c.dispatch_id, claim_token=c.claim_token, tickets=tickets)  # type: ignore[arg-type]
    decide: Any = svc.decide
    approve = {
        "decision_id": "dec-1",
        "action": "resume",
        "result": {"approved": True},
        "reason": "ok",
        "updated_at": 5,
    }
    decide("golden-run-perm", "tc-1", approve, delivery_path="remote_live")
    decide("golden-run-perm", "tc-2", {"decision_id": "dec-2", "action": "cancel", "result": {"approved": False}})
    with contextlib.suppress(MailboxError):  # the resume dispatch id is taken: MailboxResumeFailed
        resume = {"decision_id": "dec-3", "action": "resume", "result": {"note": "x"}}
        decide("golden-run-perm", "tc-3", resume, resume_dispatch_id="golden-dispatch-perm")
    decide("golden-run-perm", "tc-3", {"decision_id": "dec-4", "action": "resume", "result": "plain"}, priority=9)
    c = svc.claim(T, consumer_id="golden-worker")
    assert c is not None and c.claim_token is not None
    svc.record_start(c.dispatch_id, claim_token=c.claim_token)
    svc.finish_run("golden-run-perm", {"type": "error", "value": "tool exploded"})  # type: ignore[arg-type]
    svc.ack(c.dispatch_id, claim_token=c.claim_token)
    terminations = [
        {"type": "stopped", "value": {"code": "max_turns", "detail": "10"}},
        {"type": "blocked", "value": "needs approval"},
        {"type": "behavior_requested"},
    ]
    for i, termination in enumerate(terminations):
        svc.submit(f"golden-thread-{i}", f"golden-run-finish-{i}")
        svc.finish_run(f"golden-run-finish-{i}", termination)  # type: ignore[arg-type]
    svc.submit("golden-thread-dl", "golden-run-dl", max_attempts=2)
    for _ in range(2):  # requeued, then dead-lettered when the lease expires on the last attempt
        svc.claim("golden-thread-dl", consumer_id="w", lease_ms=1)
        advance(100)
        svc.reclaim_expired_leases()


def _lines(rows: Iterator[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows).encode()


def dump(db: Path, svc: MailboxService, out: Path) -> None:
    conn = sqlite3.connect(db)
    events = conn.execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid"
    )
    snapshots = conn.execute(
        "SELECT originator_id, originator_version, topic, state FROM stored_snapshots "
        "ORDER BY originator_id, originator_version"
    )
    files = {
        "events": (
            {"id": i, "originator_id": o, "originator_version": v, "topic": t, "state": s.decode()}
            for i, o, v, t, s in events
        ),
        "snapshots": (
            {"originator_id": o, "originator_version": v, "topic": t, "state": s.decode()} for o, v, t, s in snapshots
        ),
        "canonical": (json.loads(e.to_json_line()) for e in svc.iter_canonical_events()),
        "records": _records(svc),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in files.items():
        (out / f"{name}.jsonl.gz").write_bytes(gzip.compress(_lines(rows), mtime=0))


def _records(svc: MailboxService) -> Iterator[dict[str, Any]]:
    rows = svc.tables.all_dispatches()
    for row in rows:
        yield {"dispatch": svc.get_dispatch(row.dispatch_id).model_dump(mode="json")}
    for run_id in sorted({row.run_id for row in rows}):
        yield {"run": svc.get_run(run_id).model_dump(mode="json")}
    for thread_id in sorted({row.thread_id for row in rows}):
        mailbox = svc.get_mailbox(thread_id)
        assert mailbox is not None
        yield {"mailbox": mailbox.model_dump(mode="json")}


def write(out: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "golden.db"
        code = run_demo(Console(stderr=True), sqlite_env(db), threads=30, workers=4, seed=7, time_limit=120)
        assert code == 0, "the demo failed"
        clock = [10_000_000_000_000]

        def now() -> int:
            clock[0] += 7
            return clock[0]

        def advance(ms: int) -> None:
            clock[0] += ms

        svc = MailboxService(env=sqlite_env(db), clock=now)
        extras(svc, advance)
        rows = svc.tables.all_dispatches()
        for thread_id in sorted({r.thread_id for r in rows}):
            svc.take_snapshot(mailbox_aggregate_id(thread_id))
            if thread_log_id(thread_id) in svc.repository:
                svc.take_snapshot(thread_log_id(thread_id))
        for run_id in sorted({r.run_id for r in rows}):
            svc.take_snapshot(run_aggregate_id(run_id))
        dump(db, svc, out)
        svc.close()


if __name__ == "__main__":
    write(Path(sys.argv[1]))
