"""A handler for the worker runtime: ``mailbox worker worker_agent:handle --postgres``, run from this folder.

A stand-in agent, by the run's agent id: "shell-bot" asks for permission to run a tool first (and then
reports what the human decided), "flaky-bot" times out on its first attempt (retried with backoff),
"broken-bot" fails for good (dead-lettered); every other run just answers. docs/worker.md walks through it;
tests/test_worker_example.py runs it.
"""

from __future__ import annotations

from run_mailbox import Message, TextBlock, ToolTicket
from run_mailbox.worker import Job, NeedsPermission, PermanentError


def say(job: Job, text: str, part: str = "reply") -> list[Message]:
    """One assistant message, with an id unique to this attempt."""
    message_id = f"{job.dispatch_id}/{job.dispatch.attempt_count}/{part}"
    return [Message(message_id=message_id, role="assistant", content=[TextBlock(type="text", text=text)])]


def handle(job: Job) -> list[Message] | NeedsPermission:
    """One attempt of one run. Returns the messages the run produced: the worker commits them, then acks."""
    run = job.get_run()  # with the decisions made so far, when the run resumes after asking
    if run.agent_id == "broken-bot":
        raise PermanentError("the model refuses this prompt")  # no retry: dead-lettered, the run errors
    if run.agent_id == "flaky-bot" and job.dispatch.attempt_count == 0:
        raise TimeoutError("model timeout")  # any other exception: nacked, retried after the backoff
    if run.agent_id == "shell-bot" and not run.decisions:
        ticket = ToolTicket(tool_call_id=f"{run.run_id}/call-1", tool_name="shell", arguments={"cmd": "ls"})
        return NeedsPermission([ticket], say(job, "May I run `ls`?", "ask"))  # the run waits for a human
    if any(decision.resume.approved is False for decision in run.decisions):
        return say(job, "Understood, I will not run it.")
    return say(job, "Done.")
