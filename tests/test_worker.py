"""The worker runtime on every backend: what each way a handler ends writes to the mailbox, sync and async
handlers, batched acks, and the asyncio entry points. Real stores, real clock, nothing mocked."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from run_mailbox import (
    AsyncMailboxService,
    DispatchStatus,
    MailboxService,
    RunStatus,
    ToolCallResume,
    ToolTicket,
)
from run_mailbox.domain import StoreUnavailable
from run_mailbox.worker import Job, NeedsPermission, PermanentError, Worker
from tests.worker_support import kinds_of, reply, running, wait_until


@pytest.fixture
def mailbox(env: dict[str, str]) -> Iterator[MailboxService]:
    service = MailboxService(env=env)  # the wall clock: leases and backoffs run in real time
    yield service
    service.close()


def settled(service: MailboxService, dispatch_id: str, *statuses: DispatchStatus) -> Any:
    return wait_until(lambda: (d := service.get_dispatch(dispatch_id)).status in statuses and d)


def record_commands(service: MailboxService) -> list[str]:
    """The names of the commands ``service`` runs from now on, in order (the worker's included)."""
    commands: list[str] = []
    execute = service.execute

    def recording(cmd: Any) -> Any:
        commands.append(cmd.name)
        return execute(cmd)

    service.execute = recording  # type: ignore[method-assign]
    return commands


def test_a_handler_that_returns_acks_after_committing_its_messages(mailbox):
    seen: list[Job] = []

    def handler(job: Job) -> Any:
        seen.append(job)
        return reply(job, f"hello from {job.run_id}")

    with running(mailbox, handler) as worker:
        d1 = mailbox.submit("thread-1", "run-1")
        d2 = mailbox.submit("thread-2", "run-2")
        for d in (d1, d2):
            settled(mailbox, d.dispatch_id, DispatchStatus.ACKED)
    assert sorted(j.run_id for j in seen) == ["run-1", "run-2"]
    job = next(j for j in seen if j.run_id == "run-1")
    assert (job.thread_id, job.dispatch_id, job.dispatch.status) == ("thread-1", d1.dispatch_id, DispatchStatus.CLAIMED)
    assert job.dispatch.claimed_by == worker.consumer_id and not job.cancelled
    run = mailbox.get_run("run-1")
    assert run.status is RunStatus.DONE and run.termination is not None and run.termination.type == "natural_end"
    kinds = kinds_of(mailbox, "run-1")
    assert kinds.index("MessageCommitted") < kinds.index("RunFinished")
    assert worker.stats["claimed"] == 2 and worker.stats["acked"] == 2


def test_an_exception_nacks_with_backoff_and_the_retry_is_claimed_when_due(mailbox):
    attempts: list[int] = []

    def handler(job: Job) -> None:
        attempts.append(job.dispatch.attempt_count)
        if job.dispatch.attempt_count == 0:
            raise TimeoutError("model timeout")

    with running(mailbox, handler) as worker:
        d = mailbox.submit("thread-1", "run-1")
        done = settled(mailbox, d.dispatch_id, DispatchStatus.ACKED)
    assert attempts == [0, 1] and done.attempt_count == 1 and done.last_error == "TimeoutError: model timeout"
    (rescheduled,) = [e.payload for e in mailbox.iter_canonical_events() if e.kind == "RunRescheduled"]
    assert rescheduled["reason"] == "retry_backoff"
    assert rescheduled["available_at"] - rescheduled["updated_at"] == 250  # the mailbox's first backoff step
    assert worker.stats["nacked"] == 1 and worker.stats["acked"] == 1


def test_a_permanent_error_dead_letters(mailbox):
    class Refused(Exception):
        pass

    def handler(job: Job) -> None:
        if job.run_id == "run-1":
            raise PermanentError("the model refuses this prompt")
        raise Refused("configured as permanent")

    with running(mailbox, handler, permanent_errors=(PermanentError, Refused)) as worker:
        d1 = mailbox.submit("thread-1", "run-1")
        d2 = mailbox.submit("thread-2", "run-2")
        dead = [settled(mailbox, d.dispatch_id, DispatchStatus.DEAD_LETTER) for d in (d1, d2)]
    assert [d.last_error for d in dead] == [
        "PermanentError: the model refuses this prompt",
        "Refused: configured as permanent",
    ]
    assert all(d.attempt_count == 0 for d in dead)
    assert mailbox.get_run("run-1").termination.type == "error"
    assert "DispatchDeadLettered" in kinds_of(mailbox, "run-1") and "RunRescheduled" not in kinds_of(mailbox, "run-1")
    assert worker.stats["dead_lettered"] == 2


def test_asking_for_permission_suspends_and_the_resume_runs_with_the_decision(mailbox):
    def handler(job: Job) -> Any:
        run = job.get_run()
        if not run.decisions:
            ticket = ToolTicket(tool_call_id=f"{job.run_id}/call-1", tool_name="shell", arguments={"cmd": "ls"})
            asking = reply(job, "may I?")
            if job.run_id == "run-raises":
                raise NeedsPermission([ticket], asking)
            return NeedsPermission([ticket], asking)
        return reply(job, "approved" if run.decisions[0].resume.approved else "denied")

    with running(mailbox, handler) as worker:
        for run_id in ("run-raises", "run-returns"):
            first = mailbox.submit(f"thread-{run_id}", run_id)
            settled(mailbox, first.dispatch_id, DispatchStatus.ACKED)
            waiting = wait_until(lambda r=run_id: (run := mailbox.get_run(r)).status is RunStatus.WAITING and run)
            (ticket,) = waiting.pending_tickets()
            assert ticket.tool_name == "shell"
            resume = ToolCallResume(decision_id=f"{run_id}-d1", action="resume", result={"approved": True})
            outcome = mailbox.decide(run_id, ticket.tool_call_id, resume, delivery_path="remote_live")
            settled(mailbox, outcome.resume_dispatch_id, DispatchStatus.ACKED)
            assert wait_until(lambda r=run_id: mailbox.get_run(r).status is RunStatus.DONE)
            kinds = Counter(kinds_of(mailbox, run_id))
            assert (
                kinds["RunSuspended"] == 1 and kinds["MessageCommitted"] == 2 and kinds["ToolPermissionResolved"] == 1
            )
    assert worker.stats["suspended"] == 2 and worker.stats["acked"] == 2


def test_returning_something_that_is_not_messages_nacks(mailbox):
    with running(mailbox, lambda job: 42) as worker:
        d = mailbox.submit("thread-1", "run-1", max_attempts=1)
        dead = settled(mailbox, d.dispatch_id, DispatchStatus.DEAD_LETTER)
    assert "the handler returned int, not messages" in (dead.last_error or "")
    assert worker.stats["nacked"] == 1


def test_messages_the_mailbox_refuses_nack_the_attempt(mailbox):
    def handler(job: Job) -> Any:
        said = [m.model_copy(update={"message_id": "m-1"}) for m in reply(job, f"try {job.dispatch.attempt_count}")]
        if job.dispatch.attempt_count == 0:
            job.commit_messages(said)
            raise TimeoutError("model timeout")
        return said  # the same message id with other content: refused

    with running(mailbox, handler) as worker:
        d = mailbox.submit("thread-1", "run-1", max_attempts=2)
        dead = settled(mailbox, d.dispatch_id, DispatchStatus.DEAD_LETTER)
    assert (dead.last_error or "").startswith("the handler's messages were refused: DuplicateMessage")
    assert worker.stats["acked"] == 0 and worker.stats["nacked"] == 2
    assert kinds_of(mailbox, "run-1").count("MessageCommitted") == 1  # the first attempt's only


def test_async_handlers_on_an_async_mailbox_with_async_with(mailbox):
    started = []

    async def handler(job: Job) -> Any:
        started.append(job.run_id)
        run = await job.aget_run()
        await asyncio.sleep(0.01)
        if run.run_id == "run-bad":
            raise PermanentError("no")
        await job.acommit_messages(reply(job))
        return None

    async def main() -> Worker:
        async with AsyncMailboxService(mailbox) as wrapped, Worker(wrapped, handler, lease_ms=2_000) as worker:
            assert worker.handler_is_async
            good = await wrapped.submit("thread-1", "run-good")
            bad = await wrapped.submit("thread-2", "run-bad")
            async with asyncio.timeout(10):
                while (await wrapped.get_dispatch(good.dispatch_id)).status is not DispatchStatus.ACKED or (
                    await wrapped.get_dispatch(bad.dispatch_id)
                ).status is not DispatchStatus.DEAD_LETTER:
                    await asyncio.sleep(0.01)
        assert worker.stopped.is_set()
        return worker

    worker = asyncio.run(main())
    assert sorted(started) == ["run-bad", "run-good"]
    assert "MessageCommitted" in kinds_of(mailbox, "run-good")
    assert worker.stats["acked"] == 1 and worker.stats["dead_lettered"] == 1


def test_attempts_that_finish_together_are_acked_in_one_transaction(mailbox):
    gate = threading.Barrier(6, timeout=10)
    commands = record_commands(mailbox)

    def handler(job: Job) -> None:
        gate.wait()  # all six finish at the same moment

    with running(mailbox, handler, concurrency=6) as worker:
        submitted = mailbox.submit_many([{"thread_id": f"thread-{i}", "run_id": f"run-{i}"} for i in range(6)])
        for d in submitted:
            settled(mailbox, d.dispatch_id, DispatchStatus.ACKED)
    acks = Counter(c for c in commands if c in ("ack", "ack_many"))
    assert worker.stats["acked"] == 6
    assert acks["ack_many"] >= 1 and acks["ack"] + acks["ack_many"] < 6, acks


def hold_acks(service: MailboxService) -> threading.Event:
    """Makes ``service``'s ack and ack_many wait until the returned event is set."""
    release = threading.Event()
    execute = service.execute

    def held(cmd: Any) -> Any:
        if cmd.name in ("ack", "ack_many"):
            assert release.wait(30), "the acks were never released"
        return execute(cmd)

    service.execute = held  # type: ignore[method-assign]
    return release


def test_the_next_dispatches_are_claimed_while_finished_attempts_are_still_being_acked(mailbox):
    """A slot frees when its handler ends: the worker claims again without waiting for the ack's write,
    but holds at most ``concurrency`` attempts whose outcomes are still being written."""
    release = hold_acks(mailbox)
    ran: list[str] = []

    def handler(job: Job) -> None:
        ran.append(job.run_id)

    with running(mailbox, handler, concurrency=2, poll_interval_s=0.02) as worker:
        submitted = mailbox.submit_many([{"thread_id": f"thread-{i}", "run_id": f"run-{i}"} for i in range(6)])
        wait_until(lambda: len(ran) == 4)  # two handlers' worth beyond the two whose acks are held
        time.sleep(0.3)  # many polls: none claims a fifth while four outcomes wait for their writes
        assert len(ran) == 4 and worker.stats["claimed"] == 4, (ran, worker.stats)
        assert all(mailbox.get_dispatch(d.dispatch_id).status is not DispatchStatus.ACKED for d in submitted)
        release.set()
        for d in submitted:
            settled(mailbox, d.dispatch_id, DispatchStatus.ACKED)
    assert sorted(ran) == [f"run-{i}" for i in range(6)]
    assert worker.stats["acked"] == 6 and worker.stats["claimed"] == 6


def test_the_heartbeat_extends_the_lease_while_the_handler_runs_and_never_after(mailbox):
    commands = record_commands(mailbox)

    def handler(job: Job) -> None:
        time.sleep(0.6)

    with running(mailbox, handler, heartbeat_s=0.1) as worker:
        d = mailbox.submit("thread-1", "run-1")
        settled(mailbox, d.dispatch_id, DispatchStatus.ACKED)
        time.sleep(0.35)  # three more beats' worth, had the heartbeat outlived the handler
    beats = kinds_of(mailbox, "run-1").count("LeaseExtended")
    assert 2 <= beats <= 6, beats  # one every 0.1 s or more while the handler ran
    after_ack = commands[commands.index("ack") :]
    assert "extend_lease" not in after_ack, after_ack
    assert commands.count("extend_lease") == beats and worker.stats["acked"] == 1


def test_a_heartbeat_that_meets_store_trouble_tries_again_at_the_next_beat(mailbox):
    refused: list[str] = []
    execute = mailbox.execute

    def flaky(cmd: Any) -> Any:
        if cmd.name == "extend_lease" and not refused:
            refused.append(cmd.dispatch_id)
            raise StoreUnavailable("extend_lease", "the store is away for a moment")
        return execute(cmd)

    mailbox.execute = flaky  # type: ignore[method-assign]

    def handler(job: Job) -> None:
        time.sleep(0.45)

    with running(mailbox, handler, heartbeat_s=0.1) as worker:
        d = mailbox.submit("thread-1", "run-1")
        settled(mailbox, d.dispatch_id, DispatchStatus.ACKED)
    assert refused == [d.dispatch_id]
    assert kinds_of(mailbox, "run-1").count("LeaseExtended") >= 1  # the beats after the failed one went on
    assert worker.stats["acked"] == 1


def test_a_worker_refuses_bad_settings_and_cannot_serve_twice(mailbox):
    with pytest.raises(ValueError, match="concurrency"):
        Worker(mailbox, lambda job: None, concurrency=0)
    with running(mailbox, lambda job: None) as worker, pytest.raises(RuntimeError, match="serves once"):
        asyncio.run(worker.serve())
    with pytest.raises(RuntimeError, match="serves once"):
        worker.run()


def test_stop_before_start_returns_at_once(mailbox):
    worker = Worker(mailbox, lambda job: None)
    worker.stop()
    worker.run()
    assert worker.stopped.is_set() and worker.stats["claimed"] == 0
