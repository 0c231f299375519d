"""An asyncio agent server on run-mailbox, end to end: HTTP endpoints (submit, decide, status) and a
worker task on the same event loop, both on one AsyncMailboxService.

The endpoints are plain async methods that take and return JSON-ready values with an HTTP status,
so any asyncio framework can route to them; ``create_app`` wires them into FastAPI. ``python
examples/asyncio_agent_server.py`` runs the whole flow in-process on a temporary SQLite file.
docs/guide-asyncio.md walks through it; tests/test_guide_asyncio.py runs it on every backend.
"""

from __future__ import annotations

# --8<-- [start:agent]
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from run_mailbox import (
    AlreadyExists,
    AsyncMailboxService,
    DispatchRecord,
    DispatchSuperseded,
    IdempotencyConflict,
    InvalidArgument,
    InvalidTransition,
    MailboxError,
    Message,
    NotFound,
    RunRecord,
    TextBlock,
    ToolCallResume,
    ToolTicket,
)


class NeedsPermission(Exception):
    """Raised by an agent that wants to call tools a human must approve first."""

    def __init__(self, tickets: list[ToolTicket], said: list[Message] | None = None) -> None:
        super().__init__(f"{len(tickets)} tool call(s) need permission")
        self.tickets = tickets
        self.said = said or []


class PermanentError(Exception):
    """Raised by an agent when retrying cannot help: the run is dead-lettered."""


@dataclass(frozen=True)
class Job:
    """What the agent is handed: the claimed dispatch and its run (with any decisions so far)."""

    dispatch: DispatchRecord
    run: RunRecord


Agent = Callable[[Job], Awaitable[list[Message]]]
"""Runs one attempt; returns the messages it produced. Any other exception is a transient failure."""
# --8<-- [end:agent]


# --8<-- [start:endpoints]
def http_status(error: MailboxError) -> int:
    """The HTTP status of a refusal: every refusal is a typed MailboxError."""
    if isinstance(error, InvalidArgument):
        return 422
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, (AlreadyExists, IdempotencyConflict, InvalidTransition)):
        return 409
    return 400


class AgentServer:
    def __init__(
        self,
        mailbox: AsyncMailboxService,
        agent: Agent,
        *,
        consumer_id: str = "worker-1",
        concurrency: int = 4,
        lease_ms: int = 30_000,
        poll_s: float = 0.05,
    ) -> None:
        self.mailbox = mailbox
        self.agent = agent
        self.consumer_id = consumer_id
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.poll_s = poll_s

    async def submit(self, thread_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST /threads/{thread_id}/runs {"run_id", "text", "agent_id"?, "priority"?}"""
        try:
            run_id = body["run_id"]
            dispatch = await self.mailbox.submit(
                thread_id,
                run_id,
                agent_id=body.get("agent_id", "default"),
                priority=body.get("priority", 128),
                idempotency_key=f"submit/{thread_id}/{run_id}",  # a client retry gets the same answer
            )
            prompt = Message(
                message_id=f"{run_id}/prompt", role="user", content=[TextBlock(type="text", text=body["text"])]
            )
            await self.mailbox.commit_messages(thread_id, run_id, [prompt])
        except KeyError as missing:
            return 422, {"error": f"missing {missing}"}
        except MailboxError as error:
            return http_status(error), {"error": str(error)}
        return 202, {"run_id": run_id, "dispatch_id": dispatch.dispatch_id, "status": dispatch.status}

    async def decide(self, run_id: str, tool_call_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """POST /runs/{run_id}/decisions/{tool_call_id} {"decision_id", "approved", "reason"?}"""
        try:
            resume = ToolCallResume(
                decision_id=body["decision_id"],
                action="resume",
                result={"approved": bool(body["approved"])},
                reason=body.get("reason"),
            )
            outcome = await self.mailbox.decide(run_id, tool_call_id, resume, delivery_path="remote_live")
        except KeyError as missing:
            return 422, {"error": f"missing {missing}"}
        except MailboxError as error:
            return http_status(error), {"error": str(error)}
        return 200, outcome.model_dump(mode="json")

    async def status(self, run_id: str) -> tuple[int, dict[str, Any]]:
        """GET /runs/{run_id}"""
        try:
            run = await self.mailbox.get_run(run_id)
        except MailboxError as error:
            return http_status(error), {"error": str(error)}
        pending = [t.model_dump(mode="json") for t in run.pending_tickets()] if run.status == "waiting" else []
        termination = run.termination.to_json() if run.termination else None
        return 200, {"run_id": run_id, "status": run.status, "termination": termination, "pending": pending}

    # --8<-- [end:endpoints]

    # --8<-- [start:worker]
    async def work(self, stop: asyncio.Event) -> None:
        """The worker: sweep expired leases, claim a batch, run each claimed dispatch; until ``stop``."""
        while not stop.is_set():
            await self.mailbox.reclaim_expired_leases()
            claimed = await self.mailbox.claim_next(
                consumer_id=self.consumer_id, lease_ms=self.lease_ms, limit=self.concurrency
            )
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll_s)
                continue
            await asyncio.gather(*(self.attempt(dispatch) for dispatch in claimed))

    async def attempt(self, dispatch: DispatchRecord) -> None:
        """One attempt: start it, keep its lease alive while the agent runs, then report how it went."""
        mailbox, dispatch_id, token = self.mailbox, dispatch.dispatch_id, dispatch.claim_token
        assert token is not None
        try:
            await mailbox.record_start(dispatch_id, claim_token=token)
            job = Job(dispatch, await mailbox.get_run(dispatch.run_id))
            run = asyncio.create_task(self.agent(job))
            heartbeat = asyncio.create_task(self.heartbeat(dispatch_id, token, run))
            try:
                said = await run
            except NeedsPermission as ask:
                await self.commit(job, ask.said)
                await mailbox.suspend(dispatch_id, claim_token=token, tickets=ask.tickets)
            except PermanentError as error:
                await mailbox.dead_letter(dispatch_id, claim_token=token, error=str(error) or "permanent failure")
            except asyncio.CancelledError:
                if not heartbeat.done():
                    raise  # the worker itself is being cancelled
                # the lease was lost (another worker may have the dispatch now): write nothing
            except Exception as error:
                await mailbox.nack(dispatch_id, claim_token=token, error=repr(error))
            else:
                await self.commit(job, said)
                await mailbox.ack(dispatch_id, claim_token=token)
            finally:
                heartbeat.cancel()
        except DispatchSuperseded:
            pass  # the thread was interrupted: the mailbox has already ended the run
        except (InvalidTransition, NotFound):
            pass  # the claim was lost (its lease ran out and was reclaimed): another worker owns it now

    async def heartbeat(self, dispatch_id: str, token: str, run: asyncio.Task[Any]) -> None:
        """Extends the lease every third of its length; cancels the agent when the lease is lost."""
        while True:
            await asyncio.sleep(self.lease_ms / 3 / 1000)
            if not await self.mailbox.extend_lease(dispatch_id, claim_token=token, lease_ms=self.lease_ms):
                run.cancel()
                return

    async def commit(self, job: Job, messages: list[Message]) -> None:
        """Checkpoints what the attempt said (idempotent: a retried commit returns the first result)."""
        if messages:
            key = f"commit/{job.dispatch.dispatch_id}/{job.dispatch.attempt_count}/{messages[0].message_id}"
            await self.mailbox.commit_messages(job.run.thread_id, job.run.run_id, messages, idempotency_key=key)

    # --8<-- [end:worker]


# --8<-- [start:fastapi]
def create_app(env: dict[str, str], agent: Agent) -> Any:
    """The endpoints and the worker in a FastAPI app (``pip install fastapi uvicorn``; run with
    ``uvicorn 'asyncio_agent_server:app' --factory`` or your own ``create_app`` call)."""
    from fastapi import FastAPI, Response

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with AsyncMailboxService(env=env) as mailbox:
            server = app.state.server = AgentServer(mailbox, agent)
            stop = asyncio.Event()
            worker = asyncio.create_task(server.work(stop))
            yield
            stop.set()
            await worker

    app = FastAPI(lifespan=lifespan)

    def reply(response: Response, answer: tuple[int, dict[str, Any]]) -> dict[str, Any]:
        response.status_code = answer[0]
        return answer[1]

    @app.post("/threads/{thread_id}/runs")
    async def submit(thread_id: str, body: dict[str, Any], response: Response) -> dict[str, Any]:
        return reply(response, await app.state.server.submit(thread_id, body))

    @app.post("/runs/{run_id}/decisions/{tool_call_id}")
    async def decide(run_id: str, tool_call_id: str, body: dict[str, Any], response: Response) -> dict[str, Any]:
        return reply(response, await app.state.server.decide(run_id, tool_call_id, body))

    @app.get("/runs/{run_id}")
    async def status(run_id: str, response: Response) -> dict[str, Any]:
        return reply(response, await app.state.server.status(run_id))

    return app


# --8<-- [end:fastapi]


# --8<-- [start:demo]
async def demo_agent(job: Job) -> list[Message]:
    """A stand-in agent: "shell-bot" asks to run a tool first, "flaky-bot" times out on its first
    attempt, "broken-bot" fails for good; every other run just answers."""
    run, attempt = job.run, job.dispatch.attempt_count
    reply_id = f"{run.run_id}/reply/{job.dispatch.dispatch_id}/{attempt}"
    if run.agent_id == "shell-bot" and not run.decisions:
        ask = ToolTicket(tool_call_id=f"{run.run_id}/call-1", tool_name="shell", arguments={"cmd": "ls"})
        said = Message(message_id=f"{reply_id}/ask", role="assistant", content=[TextBlock(type="text", text="May I?")])
        raise NeedsPermission([ask], [said])
    if run.agent_id == "flaky-bot" and attempt == 0:
        raise TimeoutError("model timeout")
    if run.agent_id == "broken-bot":
        raise PermanentError("the model refuses this prompt")
    approved = all(d.resume.approved for d in run.decisions)
    text = "Done." if approved else "Understood, I will not run it."
    return [Message(message_id=reply_id, role="assistant", content=[TextBlock(type="text", text=text)])]


async def until(server: AgentServer, run_id: str, *statuses: str, timeout: float = 30.0) -> dict[str, Any]:
    """Polls GET /runs/{run_id} until the run is in one of ``statuses``."""
    async with asyncio.timeout(timeout):
        while True:
            _, body = await server.status(run_id)
            if body.get("status") in statuses:
                return body
            await asyncio.sleep(0.02)


async def demo(mailbox: AsyncMailboxService) -> dict[str, dict[str, Any]]:
    """Submits four runs, approves the tool call the shell bot asks for, and returns their statuses."""
    server = AgentServer(mailbox, demo_agent, lease_ms=2_000)
    stop = asyncio.Event()
    worker = asyncio.create_task(server.work(stop))
    try:
        for run_id, agent_id in [("r1", "default"), ("r2", "shell-bot"), ("r3", "flaky-bot"), ("r4", "broken-bot")]:
            code, _ = await server.submit(f"thread-{run_id}", {"run_id": run_id, "agent_id": agent_id, "text": "hi"})
            assert code == 202
        waiting = await until(server, "r2", "waiting")
        (ticket,) = waiting["pending"]
        code, _ = await server.decide("r2", ticket["tool_call_id"], {"decision_id": "d1", "approved": True})
        assert code == 200
        return {run_id: await until(server, run_id, "done") for run_id in ("r1", "r2", "r3", "r4")}
    finally:
        stop.set()
        await worker


async def main(env: dict[str, str]) -> None:
    async with AsyncMailboxService(env=env) as mailbox:
        for run_id, status in (await demo(mailbox)).items():
            print(run_id, status["status"], status["termination"])


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(
            main({"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(Path(folder) / "mailbox.db")})
        )
# --8<-- [end:demo]
