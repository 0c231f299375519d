"""AsyncMailboxService: the same commands and queries as awaitables, on every backend, and under
concurrency with the sync API on the same store. The loop is driven with ``asyncio.run``."""

from __future__ import annotations

import asyncio
import inspect
import re
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from run_mailbox import (
    AsyncMailboxService,
    ClaimTokenMismatch,
    DispatchRecord,
    DispatchStatus,
    InvalidArgument,
    InvalidTransition,
    MailboxError,
    MailboxService,
    RunNotFound,
    RunStatus,
    Submit,
    ToolCallResume,
    ToolTicket,
)
from run_mailbox.infrastructure.async_service import DEFAULT_WORKERS, acommand, blocking
from run_mailbox.infrastructure.delegates import command, delegate

T = TypeVar("T")
THREADS = 30
ASYNC_CLAIMERS = 50
SYNC_CLAIMERS = 10


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def test_every_sync_command_and_query_has_an_async_twin_with_the_same_signature():
    sync = {n: v for n, v in vars(MailboxService).items() if isinstance(v, (command, delegate))}
    twins = {n: v for n, v in vars(AsyncMailboxService).items() if isinstance(v, (acommand, blocking))}
    assert set(sync) - {"iter_canonical_events"} == set(twins)
    for name, descriptor in sync.items():
        if isinstance(descriptor, command):
            assert twins[name].model is descriptor.model, name
            assert twins[name].__signature__ == descriptor.__signature__, name
    for name in ("repair_checkpoints", "rebuild_dispatch_index", "iter_canonical_events", "execute"):
        assert inspect.iscoroutinefunction(getattr(AsyncMailboxService, name)) or inspect.isasyncgenfunction(
            getattr(AsyncMailboxService, name)
        ), name


def test_a_run_goes_through_its_whole_life_awaited(env, clock):
    async def main() -> None:
        async with AsyncMailboxService(env=env, clock=clock) as mailbox:
            queued = await mailbox.submit("thread-1", "run-1", priority=10)
            claimed = await mailbox.claim("thread-1", consumer_id="worker-1")
            assert claimed is not None and claimed.dispatch_id == queued.dispatch_id
            token = claimed.claim_token
            assert token is not None
            await mailbox.record_start(claimed.dispatch_id, claim_token=token)
            assert await mailbox.extend_lease(claimed.dispatch_id, claim_token=token, lease_ms=60_000)
            message = {"message_id": "m1", "role": "assistant", "content": [{"type": "text", "text": "ok?"}]}
            checkpoint = await mailbox.commit_messages("thread-1", "run-1", [message])
            assert (checkpoint.message_seq_start, checkpoint.message_seq_end) == (1, 1)
            ticket = ToolTicket(tool_call_id="call-1", tool_name="shell")
            waiting = await mailbox.suspend(claimed.dispatch_id, claim_token=token, tickets=[ticket])
            assert waiting.status is RunStatus.WAITING
            resume = ToolCallResume(decision_id="d-1", action="resume", result={"approved": True})
            outcome = await mailbox.decide("run-1", "call-1", resume, delivery_path="remote_live")
            again = await mailbox.decide("run-1", "call-1", resume)
            assert again == outcome and outcome.resume_dispatch_id is not None
            resumed = await mailbox.claim_dispatch(outcome.resume_dispatch_id, consumer_id="worker-2")
            assert resumed is not None and resumed.claim_token is not None
            await mailbox.record_start(resumed.dispatch_id, claim_token=resumed.claim_token)
            done = await mailbox.ack(resumed.dispatch_id, claim_token=resumed.claim_token)
            assert done.status is DispatchStatus.ACKED
            assert (await mailbox.get_run("run-1")).status is RunStatus.DONE
            assert len(await mailbox.list_dispatches("thread-1")) == 2
            assert (await mailbox.count_by_status())["acked"] == 2
            kinds = [e.kind async for e in mailbox.iter_canonical_events(upstream_only=True)]
            assert kinds == [e.kind for e in mailbox.service.iter_canonical_events(upstream_only=True)]
            assert "ToolPermissionResolved" in kinds
            assert (await mailbox.repair_checkpoints()).repaired_ranges == []
            assert await mailbox.rebuild_dispatch_index() == 2

    run(main())


def test_refusals_raise_the_same_typed_errors_from_the_await(memory_service):
    async def main() -> None:
        mailbox = AsyncMailboxService(memory_service)
        with pytest.raises(InvalidArgument) as bad:
            await mailbox.submit("thread-1", "run-1", priority=300)
        assert bad.value.field == "priority"
        with pytest.raises(RunNotFound):
            await mailbox.get_run("nobody")
        queued = await mailbox.submit("thread-1", "run-1")
        await mailbox.claim("thread-1", consumer_id="w")
        with pytest.raises(ClaimTokenMismatch):
            await mailbox.ack(queued.dispatch_id, claim_token="not-mine")
        assert await mailbox.execute(Submit("thread-2", "run-2")) is not None
        await mailbox.close()
        assert memory_service.get_run("run-2").status is RunStatus.CREATED  # the wrapped service stays open

    run(main())


def test_the_pool_is_sized_to_the_connection_pool_on_postgres(postgres_env):
    mailbox = AsyncMailboxService(env=postgres_env)
    try:
        assert mailbox.max_workers == 2 + 14
    finally:
        run(mailbox.close())

    memory = MailboxService()
    with pytest.raises(TypeError):
        AsyncMailboxService(memory, env=postgres_env)
    assert AsyncMailboxService(memory).max_workers == DEFAULT_WORKERS
    assert AsyncMailboxService(memory, max_workers=3).max_workers == 3


def test_async_and_sync_claims_on_one_store_claim_each_dispatch_once_and_one_ack_wins(env, clock):
    """50 concurrent async claims and 10 sync ones (on their own threads) race for 30 threads' work;
    then an async and a sync ack race on every claimed dispatch: exactly one wins, the other gets a
    typed refusal."""
    service = MailboxService(env=env, clock=clock)
    for i in range(THREADS):
        service.submit(f"thread-{i}", f"run-{i}")

    async def main() -> list[DispatchRecord]:
        async with AsyncMailboxService(service) as mailbox:
            loop = asyncio.get_running_loop()
            claims: list[Any] = [mailbox.claim_next(consumer_id=f"async-{i}") for i in range(ASYNC_CLAIMERS)]
            claims += [loop.run_in_executor(None, _sync_claim, service, f"sync-{i}") for i in range(SYNC_CLAIMERS)]
            outcomes = await asyncio.gather(*claims, return_exceptions=True)
            unexpected = [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, MailboxError)]
            assert unexpected == []
            won = [r for o in outcomes if isinstance(o, list) for r in o]
            while more := await mailbox.claim_next(consumer_id="sweeper", limit=THREADS):
                won += more
            assert Counter(r.dispatch_id for r in won).most_common(1)[0][1] == 1
            assert len(won) == THREADS

            acks: list[Any] = []
            for record in won:
                token = record.claim_token
                acks.append(mailbox.ack(record.dispatch_id, claim_token=token))
                acks.append(loop.run_in_executor(None, _sync_ack, service, record.dispatch_id, token))
            results = await asyncio.gather(*acks, return_exceptions=True)
            for pair in zip(results[::2], results[1::2], strict=True):
                ok = [r for r in pair if isinstance(r, DispatchRecord)]
                refused = [r for r in pair if isinstance(r, BaseException)]
                assert len(ok) == 1 and ok[0].status is DispatchStatus.ACKED, pair
                assert len(refused) == 1 and isinstance(refused[0], InvalidTransition), pair
            return won

    try:
        won = run(main())
        kinds = Counter(e.kind for e in service.iter_canonical_events())
        assert kinds["DispatchClaimed"] == THREADS and kinds["DispatchAcked"] == THREADS
        assert service.count_by_status()["acked"] == THREADS
        assert {r.dispatch_id for r in won} == {d.dispatch_id for i in range(THREADS) for d in _dispatches(service, i)}
    finally:
        service.close()


def _sync_claim(service: MailboxService, consumer: str) -> list[DispatchRecord]:
    return service.claim_next(consumer_id=consumer)


def _sync_ack(service: MailboxService, dispatch_id: str, token: str | None) -> DispatchRecord:
    assert token is not None
    return service.ack(dispatch_id, claim_token=token)


def _dispatches(service: MailboxService, i: int) -> list[DispatchRecord]:
    return service.list_dispatches(f"thread-{i}")


def test_the_readme_asyncio_example_runs_and_prints_what_it_says(tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Use it from asyncio", 1)[1]
    example = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert example is not None
    monkeypatch.chdir(tmp_path)
    exec(compile(example.group(1), "README asyncio example", "exec"), {"__name__": "readme"})
    assert capsys.readouterr().out == "acked done\n"
