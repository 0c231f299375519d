"""The worker guide's handler (examples/worker_agent.py, included in docs/worker.md) does what the guide says,
on every backend: runs flow, a tool call waits for a human and resumes, a flaky run is retried, a broken one is
dead-lettered."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

from run_mailbox import DispatchStatus, MailboxService, RunStatus, ToolCallResume
from tests.worker_support import running, wait_until

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "worker_agent.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("worker_agent", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_guide_includes_the_example_it_tests():
    assert '--8<-- "examples/worker_agent.py"' in (ROOT / "docs" / "worker.md").read_text()


def test_the_example_handler_drives_runs_to_their_ends(env):
    example = load_example()
    mailbox = MailboxService(env=env)
    try:
        with running(mailbox, example.handle, concurrency=4) as worker:
            for run_id, agent_id in [("r1", "default"), ("r2", "shell-bot"), ("r3", "flaky-bot"), ("r4", "broken-bot")]:
                mailbox.submit(f"thread-{run_id}", run_id, agent_id=agent_id)
            waiting = wait_until(lambda: (run := mailbox.get_run("r2")).status is RunStatus.WAITING and run)
            (ticket,) = waiting.pending_tickets()
            approve = ToolCallResume(decision_id="d1", action="resume", result={"approved": True})
            mailbox.decide("r2", ticket.tool_call_id, approve, delivery_path="remote_live")
            done = {
                r: wait_until(lambda r=r: (run := mailbox.get_run(r)).status is RunStatus.DONE and run)
                for r in ("r1", "r2", "r3", "r4")
            }
        assert {r: run.termination.type for r, run in done.items()} == {
            "r1": "natural_end",
            "r2": "natural_end",
            "r3": "natural_end",
            "r4": "error",
        }
        flaky = mailbox.list_dispatches("thread-r3")
        assert [(d.status, d.attempt_count, d.last_error) for d in flaky] == [
            (DispatchStatus.ACKED, 1, "TimeoutError: model timeout")
        ]
        events = list(mailbox.iter_canonical_events())
        said = [e.payload["content_blocks"][0]["text"] for e in events if e.kind == "MessageCommitted"]
        assert "May I run `ls`?" in said and said.count("Done.") == 3
        # r1; r2 asks (suspended), then its resume; r3 fails once (nacked), then its retry; r4 (dead-lettered)
        assert worker.stats == {"claimed": 6, "acked": 3, "suspended": 1, "nacked": 1, "dead_lettered": 1}
    finally:
        mailbox.close()
