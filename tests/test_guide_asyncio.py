"""The asyncio guide's code (examples/asyncio_agent_server.py, included in docs/guide-asyncio.md) runs
as the guide says, on every backend: the endpoints, the worker, and the FastAPI wiring (against a
stand-in FastAPI that records the routes, so no web framework is needed)."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import types
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from run_mailbox import AsyncMailboxService, DispatchStatus, MailboxService, Message, TextBlock

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "asyncio_agent_server.py"


def load_example() -> Any:
    spec = importlib.util.spec_from_file_location("asyncio_agent_server", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


example = load_example()


def test_the_guide_includes_the_example_it_tests():
    guide = (ROOT / "docs" / "guide-asyncio.md").read_text()
    for section in ("agent", "endpoints", "worker", "fastapi", "demo"):
        assert f'--8<-- "examples/asyncio_agent_server.py:{section}"' in guide, section
        assert f"# --8<-- [start:{section}]" in EXAMPLE.read_text(), section


def test_runs_flow_through_the_server_end_to_end(env):
    mailbox = MailboxService(env=env)

    async def main() -> dict[str, Any]:
        async with AsyncMailboxService(mailbox) as wrapped:
            return await example.demo(wrapped)

    statuses = asyncio.run(main())
    assert {run: s["termination"]["type"] for run, s in statuses.items()} == {
        "r1": "natural_end",
        "r2": "natural_end",
        "r3": "natural_end",
        "r4": "error",
    }
    try:
        kinds = Counter(e.kind for e in mailbox.iter_canonical_events())
        reasons = [e.payload.get("reason") for e in mailbox.iter_canonical_events() if e.kind == "RunRescheduled"]
        assert reasons == ["retry_backoff"]  # the flaky bot's first attempt
        assert kinds["ToolPermissionResolved"] == 1 and kinds["RunSuspended"] == 1
        assert kinds["DispatchDeadLettered"] == 1
        assert kinds["MessageCommitted"] == 4 + 3 + 1  # prompts, replies (not r4's), the shell bot's question
        assert mailbox.count_by_status()["acked"] == 4  # r1, r2's suspension and resume, r3
    finally:
        mailbox.close()


def test_the_endpoints_answer_refusals_with_http_statuses(memory_service):
    async def main() -> None:
        server = example.AgentServer(AsyncMailboxService(memory_service), example.demo_agent)
        assert (await server.submit("t1", {"run_id": "r1"}))[0] == 422  # no text
        code, body = await server.submit("t1", {"run_id": "r1", "text": "hi", "priority": 300})
        assert code == 422 and "priority" in body["error"]
        assert (await server.submit("t1", {"run_id": "r1", "text": "hi"}))[0] == 202
        assert (await server.submit("t1", {"run_id": "r1", "text": "hi"}))[0] == 202  # a retried request
        assert (await server.submit("t2", {"run_id": "r1", "text": "hi"}))[0] == 409  # the run exists
        assert (await server.status("nobody"))[0] == 404
        code, body = await server.status("r1")
        assert (code, body["status"], body["pending"]) == (200, "created", [])
        assert (await server.decide("r1", "call-1", {"decision_id": "d1", "approved": True}))[0] == 409
        assert (await server.decide("r1", "call-1", {"approved": True}))[0] == 422

    asyncio.run(main())


def test_a_lost_lease_cancels_the_agent_and_the_worker_writes_nothing(memory_service):
    started = asyncio.Event()

    async def slow_agent(job: Any) -> list[Message]:
        started.set()
        await asyncio.sleep(30)
        return [Message(message_id="never", role="assistant", content=[TextBlock(type="text", text="late")])]

    async def main() -> None:
        mailbox = AsyncMailboxService(memory_service)
        server = example.AgentServer(mailbox, slow_agent, lease_ms=150)
        await server.submit("t1", {"run_id": "r1", "text": "hi"})
        stop = asyncio.Event()
        worker = asyncio.create_task(server.work(stop))
        await asyncio.wait_for(started.wait(), 10)
        await mailbox.interrupt("t1")  # the owner's next write (the heartbeat) is fenced
        status = await example.until(server, "r1", "done", timeout=10)
        assert status["termination"] == {"type": "cancelled"}
        stop.set()
        await asyncio.wait_for(worker, 10)

    asyncio.run(main())
    (dispatch,) = memory_service.list_dispatches("t1")
    assert dispatch.status is DispatchStatus.SUPERSEDED
    assert "never" not in [e.payload.get("message_id") for e in memory_service.iter_canonical_events()]


class FakeFastAPI:
    """Just enough of FastAPI for create_app: route decorators, app.state and the lifespan."""

    def __init__(self, lifespan: Any) -> None:
        self.lifespan = lifespan
        self.state = types.SimpleNamespace()
        self.routes: dict[tuple[str, str], Any] = {}

    def _route(self, method: str, path: str) -> Any:
        def register(function: Any) -> Any:
            self.routes[(method, path)] = function
            return function

        return register

    def post(self, path: str) -> Any:
        return self._route("POST", path)

    def get(self, path: str) -> Any:
        return self._route("GET", path)


class FakeResponse:
    status_code = 200


def test_create_app_routes_the_endpoints_and_runs_the_worker_in_its_lifespan(env, monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", types.SimpleNamespace(FastAPI=FakeFastAPI, Response=FakeResponse))
    app = example.create_app(env, example.demo_agent)
    assert set(app.routes) == {
        ("POST", "/threads/{thread_id}/runs"),
        ("POST", "/runs/{run_id}/decisions/{tool_call_id}"),
        ("GET", "/runs/{run_id}"),
    }

    async def call(method: str, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
        response = FakeResponse()
        body = await app.routes[(method, path)](response=response, **params)
        return response.status_code, body

    async def main() -> None:
        async with app.lifespan(app):
            code, _ = await call(
                "POST", "/threads/{thread_id}/runs", thread_id="t1", body={"run_id": "r1", "text": "x"}
            )
            assert code == 202
            assert (await call("GET", "/runs/{run_id}", run_id="nobody"))[0] == 404
            await example.until(app.state.server, "r1", "done")
            assert (await call("GET", "/runs/{run_id}", run_id="r1"))[1]["status"] == "done"

    asyncio.run(main())


@pytest.mark.parametrize("name", ["NeedsPermission", "PermanentError", "Job", "AgentServer", "create_app", "demo"])
def test_the_example_defines_what_the_guide_names(name):
    assert hasattr(example, name)
