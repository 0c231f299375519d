"""Operator commands: ``mailbox redrive``, ``cancel``, ``interrupt`` and ``decide``."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import NAMESPACE_URL, uuid5

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from run_mailbox.cli.app import app, opened
from run_mailbox.cli.render import JsonOption, emit, parse_time, when
from run_mailbox.domain.commands.redrive import DEFAULT_REDRIVE_BATCH
from run_mailbox.domain.permissions import ToolCallResume
from run_mailbox.domain.policies import MAX_BATCH_LIMIT
from run_mailbox.domain.results import DeadLetterEntry, RedriveResult, Refusal
from run_mailbox.infrastructure.service import MailboxService

DRY_RUN_MAX = MAX_BATCH_LIMIT - 1  # (one more is read to tell whether more match)
REASONS = "attempts_exhausted, lease_expired or permanent_failure"


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


@app.command()
def redrive(
    ctx: typer.Context,
    dispatch_id: Annotated[str | None, typer.Argument(help="The dead-lettered dispatch to redrive.")] = None,
    all_matching: Annotated[bool, typer.Option("--all", help="Every dead letter matching the filters.")] = False,
    thread_id: Annotated[str | None, typer.Option("--thread", help="Only this thread's dead letters.")] = None,
    agent_id: Annotated[str | None, typer.Option("--agent", help="Only runs of this agent.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help=f"Only this reason: {REASONS}.")] = None,
    since: Annotated[str | None, typer.Option(help="Dead-lettered at or after (ISO-8601, ms, or 2h ago).")] = None,
    until: Annotated[str | None, typer.Option(help="Dead-lettered at or before (default: now).")] = None,
    priority: Annotated[int | None, typer.Option(min=0, max=255, help="The new runs' priority.")] = None,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Dead letters per transaction.")] = DEFAULT_REDRIVE_BATCH,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what --all would redrive; change nothing.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Queue dead-lettered work again: one dead letter, or --all matching the filters.

    Each becomes a new run on the same thread for the same agent, whose creation names the dead letter;
    a dead letter is redriven once (a second redrive is refused). --all works in transactions of
    --batch dead letters until none that matches is left (--until defaults to the command's start).
    """
    filtered = any(v is not None for v in (thread_id, agent_id, reason, since, until))
    if (dispatch_id is None) == (not all_matching):
        raise typer.BadParameter("name one DISPATCH_ID or pass --all")
    if dispatch_id is not None and (filtered or dry_run):
        raise typer.BadParameter("--thread, --agent, --reason, --since, --until and --dry-run go with --all")
    with opened(ctx) as service:
        if dispatch_id is not None:
            result = service.redrive(dispatch_id, priority=priority)
            if json_output:
                emit(result)
            else:
                _out().print(_redriven_line(result))
            return
        now = service.clock()
        filters: dict[str, Any] = {
            "thread_id": thread_id,
            "agent_id": agent_id,
            "reason": reason,
            "since": parse_time(since, now, "--since"),
            "until": parse_time(until, now, "--until") if until is not None else now,
        }
        if dry_run:
            _dry_run(service, filters, now, json_output)
        else:
            _redrive_all(service, filters, priority, batch, json_output)


def _redriven_line(result: RedriveResult) -> str:
    dead = result.dead_letter
    return (
        f"redrove dispatch {dead.dispatch_id} (thread {dead.thread_id}, agent {dead.agent_id}, {dead.reason}) "
        f"as run {result.run_id}: dispatch {result.dispatch.dispatch_id} queued at priority {result.dispatch.priority}"
    )


def _dry_run(service: MailboxService, filters: dict[str, Any], now: int, json_output: bool) -> None:
    found = service.dead_letters(**filters, limit=DRY_RUN_MAX + 1)
    more, found = len(found) > DRY_RUN_MAX, found[:DRY_RUN_MAX]
    if json_output:
        emit({"dry_run": True, "filters": filters, "matching": found, "more": more})
        return
    console = _out()
    console.print(dead_letter_table(found, now, title=f"would redrive ({len(found)}{'+' if more else ''})"))
    console.print(f"dry run: {len(found)}{' or more' if more else ''} dead letters match; nothing was changed")


def dead_letter_table(entries: list[DeadLetterEntry], now: int, *, title: str) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for column in ("dispatch", "thread", "run", "agent", "reason", "dead-lettered", "tries", "error"):
        table.add_column(column, overflow="fold", min_width=24 if column == "dead-lettered" else None)
    for dead in entries:
        table.add_row(
            dead.dispatch_id,
            dead.thread_id,
            dead.run_id,
            dead.agent_id,
            dead.reason,
            when(dead.dead_lettered_at, now),
            f"{dead.attempt_count}/{dead.max_attempts}",
            dead.error or "",
        )
    return table


def _redrive_all(
    service: MailboxService, filters: dict[str, Any], priority: int | None, batch: int, json_output: bool
) -> None:
    """Bounded transactions, one after another, until no dead letter matching the filters is left
    (``until`` defaults to the start of the command, so dead letters of the new runs are not chased)."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    redriven: list[RedriveResult] = []
    refused: dict[str, Refusal] = {}
    batches = 0
    while True:
        result = service.redrive_many(**filters, limit=batch, priority=priority)
        batches += 1
        redriven += result.redriven
        refused.update((r.dispatch_id, r) for r in result.refused)
        if not json_output:
            console.print(f"batch {batches}: redrove {len(result.redriven)}, refused {len(result.refused)}")
        if not result.more or not result.redriven:
            break
    if json_output:
        emit({"dry_run": False, "filters": filters, "redriven": redriven, "refused": list(refused.values())})
    else:
        out = _out()
        for item in redriven:
            out.print(_redriven_line(item))
        for refusal in refused.values():
            out.print(f"[red]refused {refusal.dispatch_id}: {refusal.error}: {refusal.message}[/]")
        out.print(f"redrove {len(redriven)} dead letters in {batches} transactions, refused {len(refused)}")
    if refused:  # (exit status 1: some were not redriven)
        raise typer.Exit(1)


@app.command()
def cancel(
    ctx: typer.Context,
    dispatch_id: Annotated[str, typer.Argument(help="A queued dispatch.")],
    json_output: JsonOption = False,
) -> None:
    """Cancel a queued dispatch: its run ends cancelled.

    A claimed dispatch is refused: interrupt its thread instead.
    """
    with opened(ctx) as service:
        record = service.cancel(dispatch_id)
        if json_output:
            emit(record)
            return
        _out().print(f"cancelled dispatch {record.dispatch_id}: run {record.run_id} on thread {record.thread_id} ended")


@app.command()
def interrupt(
    ctx: typer.Context,
    thread_id: Annotated[str, typer.Argument(help="The thread to interrupt.")],
    json_output: JsonOption = False,
) -> None:
    """Interrupt a thread: supersede what is queued, fence what is claimed.

    Every queued dispatch is superseded (its run ends cancelled); the claimed one is fenced on its
    owner's next write.
    """
    with opened(ctx) as service:
        result = service.interrupt(thread_id)
        if json_output:
            emit(result)
            return
        out = _out()
        out.print(f"thread {thread_id}: dispatch epoch now {result.new_dispatch_epoch}")
        for record in result.superseded:
            out.print(f"superseded queued dispatch {record.dispatch_id} (run {record.run_id} ended cancelled)")
        if result.active_dispatch is not None:
            active = result.active_dispatch
            out.print(f"claimed dispatch {active.dispatch_id} is fenced on its owner's next write")
        if not result.superseded and result.active_dispatch is None:
            out.print("nothing was queued or claimed")


def default_decision_id(run_id: str, tool_call_id: str) -> str:
    """The decision id of ``mailbox decide`` without ``--decision-id``: the same for the same tool call,
    so running the command again returns the first outcome (and a different verdict is refused)."""
    return f"cli-{uuid5(NAMESPACE_URL, f'run-mailbox:decide:{run_id}/{tool_call_id}')}"


@app.command()
def decide(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The waiting run.")],
    tool_call_id: Annotated[str, typer.Argument(help="The tool call to decide.")],
    approve: Annotated[bool, typer.Option("--approve", help="Allow the tool call.")] = False,
    deny: Annotated[bool, typer.Option("--deny", help="Refuse the tool call.")] = False,
    reason: Annotated[str | None, typer.Option(help="Why (recorded with the decision).")] = None,
    decision_id: Annotated[
        str | None, typer.Option(help="The decision's id (default: one derived from the run and the tool call).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Approve or deny a tool call a run waits for.

    The last pending decision queues the run's resume. Without --decision-id the decision's id is derived
    from the run and the tool call, so running the same command again changes nothing.
    """
    if approve == deny:
        raise typer.BadParameter("give one of --approve or --deny")
    resume = ToolCallResume(
        decision_id=decision_id or default_decision_id(run_id, tool_call_id),
        action="resume",
        result={"approved": approve},
        reason=reason,
    )
    with opened(ctx) as service:
        outcome = service.decide(run_id, tool_call_id, resume, delivery_path="remote_live")
        if json_output:
            emit(outcome)
            return
        out = _out()
        verdict = "approved" if approve else "denied"
        out.print(f"{verdict} tool call {tool_call_id} of run {run_id} (decision {outcome.decision_id})")
        if outcome.resume_dispatch_id is not None:
            out.print(f"every decision is in: resume dispatch {outcome.resume_dispatch_id} queued")
        else:
            out.print(f"still waiting for: {', '.join(outcome.pending_tool_calls)}")
