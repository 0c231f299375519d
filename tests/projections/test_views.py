"""The five views as pure handlers: a real MailboxService writes the log, each view's handler
reads the log's (position, event) pairs through a dict-backed ViewTx, and the view's queries
must answer what the service itself answers. Every handler is idempotent on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from run_mailbox.domain import DispatchStatus, DispatchSuperseded, RunStatus
from run_mailbox.domain.messages import MessageSeqRange
from run_mailbox.domain.model import DomainEvent
from run_mailbox.domain.run_events import ThreadMessagesCheckpointed
from run_mailbox.projections import (
    canonical_feed,
    checkpoint_ranges,
    dispatch_queue,
    permission_resolutions,
    run_status,
)
from run_mailbox.projections.runner import ViewRunner
from run_mailbox.projections.stores import MemoryViewStore, PostgresViewStore, SQLiteViewStore
from run_mailbox.projections.views import ALL_VIEWS, view_by_name
from tests.projections._dict_tx import DictTx, project

# ---------------------------------------------------------------------- the log


def reader(service: Any) -> Any:
    """``read_page(after, limit)``: the service's decoded (position, event) pairs after ``after``."""

    def read_page(after: int, limit: int) -> list[tuple[int, DomainEvent]]:
        page = service.recorder.select_notifications(start=after, limit=limit, inclusive_of_start=False)
        return [(n.id, service.mapper.to_domain_event(n)) for n in page]

    return read_page


def log_of(service: Any) -> list[tuple[int, DomainEvent]]:
    """Every stored event of the service with its log position, in log order."""
    pairs: list[tuple[int, DomainEvent]] = []
    while page := reader(service)(pairs[-1][0] if pairs else 0, 200):
        pairs += page
    return pairs


def text(message_id: str) -> dict[str, Any]:
    return {"message_id": message_id, "role": "assistant", "content": [{"type": "text", "text": message_id}]}


def dispatch_story(s: Any, clock: Any) -> None:
    """Queue, retry until dead-lettered, fail permanently, reclaim, interrupt, cancel, ack."""
    s.submit("t-a", "r-a", priority=5, dispatch_id="d-a")
    s.submit("t-b", "r-b", priority=1, dispatch_id="d-b")
    s.submit("t-c", "r-c", available_at=clock.now + 10_000, dispatch_id="d-c")
    s.submit("t-e", "r-e", max_attempts=2, dispatch_id="d-e")
    first = s.claim("t-e", consumer_id="w-1")
    s.record_start("d-e", claim_token=first.claim_token)
    s.nack("d-e", claim_token=first.claim_token, error="boom 1")  # requeued 250 ms later
    clock.advance(250)
    second = s.claim("t-e", consumer_id="w-2")
    s.nack("d-e", claim_token=second.claim_token, error="boom 2")  # attempts exhausted
    s.submit("t-f", "r-f", dispatch_id="d-f")
    doomed = s.claim("t-f", consumer_id="w-1")
    s.record_start("d-f", claim_token=doomed.claim_token)
    s.dead_letter("d-f", claim_token=doomed.claim_token, error="bad input")
    s.submit("t-g", "r-g", dispatch_id="d-g")
    s.claim("t-g", consumer_id="w-3", lease_ms=1_000)
    clock.advance(1_001)
    assert [r.dispatch_id for r in s.reclaim_expired_leases()] == ["d-g"]
    s.submit("t-h", "r-h1", dispatch_id="d-h1")
    fenced = s.claim("t-h", consumer_id="w-4")
    s.submit("t-h", "r-h2", dispatch_id="d-h2")
    s.interrupt("t-h")
    with pytest.raises(DispatchSuperseded):
        s.ack("d-h1", claim_token=fenced.claim_token)
    s.submit("t-k", "r-k", dispatch_id="d-k")
    s.claim("t-k", consumer_id="w-5", lease_ms=5_000)
    s.submit("t-k", "r-k2", dispatch_id="d-k2")  # queued behind a claimed dispatch
    s.submit("t-m", "r-m", dispatch_id="d-m")
    s.claim("t-m", consumer_id="w-6", lease_ms=2_000)
    s.submit("t-n", "r-n", dispatch_id="d-n")
    s.cancel("d-n")
    s.submit("t-p", "r-p", dispatch_id="d-p")
    done = s.claim("t-p", consumer_id="w-7")
    s.record_start("d-p", claim_token=done.claim_token)
    clock.advance(5)
    s.ack("d-p", claim_token=done.claim_token)


def suspend(s: Any, thread_id: str, run_id: str, *tool_calls: str) -> None:
    s.submit(thread_id, run_id, dispatch_id=f"d-{run_id}")
    claimed = s.claim(thread_id, consumer_id="w-perm")
    s.record_start(claimed.dispatch_id, claim_token=claimed.claim_token)
    tickets = [{"tool_call_id": c, "tool_name": f"tool-{c}"} for c in tool_calls]
    s.suspend(claimed.dispatch_id, claim_token=claimed.claim_token, tickets=tickets)


def permission_story(s: Any, clock: Any) -> None:
    """One run gets four different decisions (one delivered twice), one run keeps a pending
    ticket, and one run is finished while it still waits."""
    suspend(s, "t-perm", "r-p1", "call-1", "call-2", "call-3", "call-4")
    clock.advance(10)
    approve = {"decision_id": "dec-1", "action": "resume", "result": {"approved": True}}
    s.decide("r-p1", "call-1", approve, delivery_path="local_live")
    s.decide("r-p1", "call-1", approve, delivery_path="durable_dispatch")  # the same decision again
    deny = {"decision_id": "dec-2", "action": "resume", "result": {"approved": False}, "reason": "too risky"}
    s.decide("r-p1", "call-2", deny)
    s.decide("r-p1", "call-3", {"decision_id": "dec-3", "action": "cancel"})
    suspend(s, "t-perm2", "r-p2", "call-9")
    suspend(s, "t-perm3", "r-p3", "call-7")
    clock.advance(10)
    s.decide("r-p1", "call-4", {"decision_id": "dec-4", "action": "resume", "result": "ok"}, resume_dispatch_id="d-rs")
    s.finish_run("r-p3", {"type": "cancelled"})


def checkpoint_story(s: Any, clock: Any) -> None:
    """Two runs of one thread commit messages in turns; one commit is delivered twice."""
    s.submit("t-log", "r-l1", dispatch_id="d-l1")
    s.submit("t-log", "r-l2", dispatch_id="d-l2")
    s.commit_messages("t-log", "r-l1", [text("m1"), text("m2")])
    clock.advance(1)
    s.commit_messages("t-log", "r-l2", [text("m3"), text("m4"), text("m5")])
    s.commit_messages("t-log", "r-l1", [text("m6")])
    s.commit_messages("t-log", "r-l1", [text("m6")])  # committed again: no new events


def full_story(s: Any, clock: Any) -> list[tuple[int, DomainEvent]]:
    dispatch_story(s, clock)
    permission_story(s, clock)
    checkpoint_story(s, clock)
    return log_of(s)


# ---------------------------------------------------------------------- registry


def test_the_registry_names_five_views_whose_table_names_never_collide():
    assert [v.name for v in ALL_VIEWS] == [
        "checkpoint_ranges",
        "permission_resolutions",
        "dispatch_queue",
        "run_status",
        "canonical_feed",
    ]
    tables = [t.name for v in ALL_VIEWS for t in v.tables]
    assert len(tables) == len(set(tables))
    assert all(view_by_name(v.name) is v for v in ALL_VIEWS)
    with pytest.raises(KeyError, match="no view named 'nope'"):
        view_by_name("nope")


# ---------------------------------------------------------------------- dispatch_queue


def test_dispatch_queue_rows_equal_the_dispatch_records_and_answer_ready_like_the_service(memory_service, clock):
    dispatch_story(memory_service, clock)
    store = project(dispatch_queue.VIEW, log_of(memory_service))
    rows = store.select(dispatch_queue.TABLE)
    assert len(rows) == 13
    for row in rows:
        record = memory_service.get_dispatch(row["dispatch_id"]).model_dump(mode="json")
        assert {k: v for k, v in row.items() if k != "position"} == {k: record[k] for k in row if k != "position"}
    ready = [r.dispatch_id for r in dispatch_queue.ready(store, clock.now)]
    assert ready == list(memory_service.ready_dispatch_ids(now=clock.now))
    assert ready == ["d-b", "d-a", "d-g"]  # d-c is not due yet, d-k2 waits behind claimed d-k
    assert [r.dispatch_id for r in dispatch_queue.ready(store, clock.now, limit=1)] == ["d-b"]
    assert "d-c" in [r.dispatch_id for r in dispatch_queue.ready(store, clock.now + 10_000)]


def test_ready_dispatches_read_past_a_long_run_of_skipped_queued_rows_and_agree_with_the_service(memory_service, clock):
    """``ready`` reads a window of queued rows in claim order and widens it while the rows it skips (on
    busy threads, or not due) leave it short: 40 dispatches on a busy thread come first here."""
    service = memory_service
    service.submit("busy", "busy-0", priority=0)
    assert service.claim("busy", consumer_id="w", lease_ms=60_000) is not None
    for i in range(1, 41):
        service.submit("busy", f"busy-{i}", priority=0)
    service.submit("free", "free-0", priority=200, dispatch_id="d-free")
    store = project(dispatch_queue.VIEW, log_of(service))
    assert [r.dispatch_id for r in dispatch_queue.ready(store, clock.now, limit=1)] == ["d-free"]
    assert [r.dispatch_id for r in dispatch_queue.ready(store, clock.now)] == list(
        service.ready_dispatch_ids(now=clock.now)
    )


def test_dispatch_queue_lists_claims_by_lease_expiry_and_dead_letters_with_their_errors(memory_service, clock):
    dispatch_story(memory_service, clock)
    store = project(dispatch_queue.VIEW, log_of(memory_service))
    claimed = dispatch_queue.claimed_by_lease_expiry(store, limit=10)
    assert [(r.dispatch_id, r.claimed_by) for r in claimed] == [("d-m", "w-6"), ("d-k", "w-5")]
    assert claimed[0].lease_until < claimed[1].lease_until
    assert [r.dispatch_id for r in dispatch_queue.claimed_by_lease_expiry(store, limit=1)] == ["d-m"]
    dead = dispatch_queue.dead_letters(store, limit=10)
    assert [(r.dispatch_id, r.attempt_count, r.last_error) for r in dead] == [
        ("d-e", 2, "boom 2"),
        ("d-f", 0, "bad input"),
    ]
    statuses = {r["dispatch_id"]: r["status"] for r in store.select(dispatch_queue.TABLE)}
    assert statuses["d-h1"] == statuses["d-h2"] == DispatchStatus.SUPERSEDED.value
    assert statuses["d-n"] == DispatchStatus.CANCELLED.value
    assert statuses["d-p"] == DispatchStatus.ACKED.value


# ---------------------------------------------------------------------- run_status


def assert_run_rows_match_records(store: Any, service: Any) -> None:
    for row in store.select(run_status.TABLE):
        record = service.get_run(row["run_id"])
        fields = record.model_dump(mode="json")
        fields["termination"] = None if record.termination is None else record.termination.to_json()
        shared = [k for k in row if k in fields]
        assert {k: row[k] for k in shared} == {k: fields[k] for k in shared}, row["run_id"]


def test_run_status_mirrors_every_run_and_counts_runs_by_status(memory_service, clock):
    dispatch_story(memory_service, clock)
    permission_story(memory_service, clock)
    store = project(run_status.VIEW, log_of(memory_service))
    assert_run_rows_match_records(store, memory_service)
    exhausted = run_status.get(store, "r-e")
    assert exhausted is not None
    assert (exhausted.status, exhausted.attempts, exhausted.error) == ("done", 2, "boom 2")
    assert exhausted.termination == {"type": "error", "value": "boom 2"}
    assert run_status.get(store, "r-g").attempts == 1  # type: ignore[union-attr]  # reclaimed once
    assert run_status.get(store, "r-p").termination == {"type": "natural_end"}
    resumed = run_status.get(store, "r-p1")
    assert (resumed.status, resumed.waiting_reason, resumed.dispatch_id) == (
        "waiting",
        "tool_permission",
        "d-rs",
    )
    assert run_status.get(store, "nope") is None
    counts = run_status.counts_by_status(store)
    assert counts == {"created": 7, "running": 0, "waiting": 2, "done": 7}
    assert sum(counts.values()) == len(store.select(run_status.TABLE))
    assert counts[RunStatus.DONE.value] == sum(
        1 for r in store.select(run_status.TABLE) if memory_service.get_run(r["run_id"]).is_done
    )


# ---------------------------------------------------------------------- permission_resolutions


def test_permission_resolutions_follow_each_ticket_from_pending_to_its_decision(memory_service, clock):
    """Spec Z12: the last decision names the dispatch that resumes the run."""
    permission_story(memory_service, clock)
    store = project(permission_resolutions.VIEW, log_of(memory_service))
    history = permission_resolutions.history_of_run(store, "r-p1")
    assert [(r.tool_call_id, r.tool_name, r.status, r.decision_id) for r in history] == [
        ("call-1", "tool-call-1", "approved", "dec-1"),
        ("call-2", "tool-call-2", "denied", "dec-2"),
        ("call-3", "tool-call-3", "cancelled", "dec-3"),
        ("call-4", "tool-call-4", "resolved", "dec-4"),
    ]
    assert [r.approved for r in history] == [True, False, None, None]
    assert history[0].delivery_path == "local_live"  # the first delivery; the second changed nothing
    assert history[1].reason == "too risky"
    assert history[2].action == "cancel"
    suspended_at = history[0].requested_at
    assert all(r.requested_at == suspended_at and r.thread_id == "t-perm" for r in history)
    assert [r.resolved_at - suspended_at for r in history] == [10, 10, 10, 20]
    assert history[3].dispatch_id == "d-rs"  # the last decision queued the resume dispatch


def test_pending_tickets_are_listed_per_thread_and_a_finished_run_abandons_its_tickets(memory_service, clock):
    permission_story(memory_service, clock)
    store = project(permission_resolutions.VIEW, log_of(memory_service))
    assert [r.tool_call_id for r in permission_resolutions.pending_by_thread(store)] == ["call-9"]
    assert [r.run_id for r in permission_resolutions.pending_by_thread(store, "t-perm2")] == ["r-p2"]
    assert permission_resolutions.pending_by_thread(store, "t-perm") == []
    abandoned = permission_resolutions.history_of_run(store, "r-p3")
    assert [(r.tool_call_id, r.status, r.decision_id) for r in abandoned] == [("call-7", "abandoned", None)]
    assert abandoned[0].resolved_at == memory_service.get_run("r-p3").finished_at


def test_pending_tickets_match_the_runs_own_pending_tickets_at_every_step(memory_service, clock):
    """The view agrees with the Run aggregate after every command of the story, not only at the end."""
    store = DictTx(permission_resolutions.VIEW)
    seen = 0
    runs: list[str] = []

    def check() -> None:
        nonlocal seen
        pairs = log_of(memory_service)
        store.apply(pairs[seen:])
        seen = len(pairs)
        expected = sorted(
            (run_id, t.tool_call_id) for run_id in runs for t in memory_service.get_run(run_id).pending_tickets()
        )
        pending = permission_resolutions.pending_by_thread(store)
        assert sorted((r.run_id, r.tool_call_id) for r in pending) == expected

    suspend(memory_service, "t-perm", "r-p1", "call-1", "call-2")
    runs.append("r-p1")
    check()
    suspend(memory_service, "t-perm2", "r-p2", "call-9")
    runs.append("r-p2")
    check()
    memory_service.decide("r-p1", "call-2", {"decision_id": "x-2", "action": "resume", "result": {"approved": True}})
    check()
    memory_service.decide("r-p1", "call-1", {"decision_id": "x-1", "action": "cancel"})
    check()
    assert len(permission_resolutions.pending_by_thread(store)) == 1


# ---------------------------------------------------------------------- checkpoint_ranges


def test_checkpoint_ranges_name_the_run_behind_every_committed_seq(memory_service, clock):
    """Spec Z1/Z2: on a thread with several runs each range stays under the run that committed it."""
    checkpoint_story(memory_service, clock)
    store = project(checkpoint_ranges.VIEW, log_of(memory_service))
    ranges = checkpoint_ranges.ranges_of_thread(store, "t-log")
    assert [(r.run_id, r.seq_start, r.seq_end, r.message_ids) for r in ranges] == [
        ("r-l1", 1, 2, ["m1", "m2"]),
        ("r-l2", 3, 5, ["m3", "m4", "m5"]),
        ("r-l1", 6, 6, ["m6"]),
    ]
    assert [checkpoint_ranges.run_for_seq(store, "t-log", seq) for seq in range(8)] == [
        None,
        "r-l1",
        "r-l1",
        "r-l2",
        "r-l2",
        "r-l2",
        "r-l1",
        None,
    ]
    summary = checkpoint_ranges.thread_summary(store, "t-log")
    assert summary is not None
    assert (summary.high_water, summary.checkpointed_through, summary.range_count) == (6, 6, 3)
    assert (summary.gaps, summary.overlaps) == ([], [])
    assert checkpoint_ranges.threads_with_gaps(store) == []
    assert checkpoint_ranges.ranges_of_thread(store, "t-other") == []


def checkpointed(position: int, thread_id: str, run_id: str, first: int, last: int) -> tuple[int, DomainEvent]:
    """A checkpoint event as a log written elsewhere (an upstream import, a bad repair) may hold it."""
    event = ThreadMessagesCheckpointed(
        originator_id=uuid4(),
        originator_version=2,
        timestamp=datetime.now(UTC),
        run_id=run_id,
        thread_id=thread_id,
        now=5_000,
        message_seq_start=first,
        message_seq_end=last,
        message_count=last - first + 1,
        message_ids=[f"m{seq}" for seq in range(first, last + 1)],
    )
    return position, event


def test_checkpoint_ranges_report_holes_and_overlaps_between_ranges(memory_service, clock):
    """Spec Z1: a range republished under a later run (upstream's repair) shows up as an overlap."""
    checkpoint_story(memory_service, clock)
    pairs = log_of(memory_service)
    end = pairs[-1][0]
    foreign = [
        checkpointed(end + 1, "t-log", "r-x", 9, 10),  # seqs 7-8 covered by no range
        checkpointed(end + 2, "t-log", "r-y", 5, 7),  # 5 and 6 covered twice
        checkpointed(end + 3, "t-far", "r-z", 3, 4),  # seqs 1-2 of t-far covered by no range
    ]
    store = project(checkpoint_ranges.VIEW, pairs + foreign)
    summary = checkpoint_ranges.thread_summary(store, "t-log")
    assert summary is not None
    assert summary.gaps == [MessageSeqRange(first=8, last=8)]
    assert summary.overlaps == [MessageSeqRange(first=5, last=6)]
    assert (summary.high_water, summary.checkpointed_through) == (6, 10)
    assert checkpoint_ranges.threads_with_gaps(store) == ["t-far", "t-log"]
    assert checkpoint_ranges.run_for_seq(store, "t-log", 5) == "r-l2"  # recorded first
    assert checkpoint_ranges.run_for_seq(store, "t-log", 7) == "r-y"


# ---------------------------------------------------------------------- canonical_feed


def test_canonical_feed_pages_like_the_services_canonical_export(memory_service, clock):
    """Spec payloads.md: the feed holds exactly the envelopes ``render`` gives, in log order."""
    pairs = full_story(memory_service, clock)
    store = project(canonical_feed.VIEW, pairs)
    everything = memory_service.canonical_events(after=0, limit=10_000)
    assert canonical_feed.feed(store, 0, 10_000) == everything
    upstream = memory_service.canonical_events(after=0, limit=10_000, upstream_only=True)
    assert canonical_feed.feed(store, 0, 10_000, upstream_only=True) == upstream
    assert 0 < len(upstream) < len(everything)
    middle = everything[10].position
    assert canonical_feed.feed(store, after=middle, limit=5) == everything[11:16]
    assert canonical_feed.feed(store, after=everything[-1].position) == []
    row = store.select(canonical_feed.TABLE, {"position": middle})[0]
    assert (row["kind"], row["idempotency_key"]) == (everything[10].kind, everything[10].idempotency_key)


# ---------------------------------------------------------------------- idempotence


@pytest.fixture
def story_log(memory_service, clock) -> list[tuple[int, DomainEvent]]:
    return full_story(memory_service, clock)


@pytest.mark.parametrize("view", ALL_VIEWS, ids=lambda v: v.name)
def test_applying_every_event_twice_leaves_the_rows_of_a_single_pass(view, story_log):
    once = project(view, story_log).snapshot()
    assert any(once.values())
    twice = project(view, [pair for pair in story_log for _ in range(2)]).snapshot()
    assert twice == once


@pytest.mark.parametrize("view", ALL_VIEWS, ids=lambda v: v.name)
def test_applying_duplicated_batches_leaves_the_rows_of_a_single_pass(view, story_log):
    once = project(view, story_log).snapshot()
    store = DictTx(view)
    for size in (7, 13):
        for start in range(0, len(story_log), size):
            batch = story_log[start : start + size]
            store.apply(batch).apply(batch)
        assert store.snapshot() == once


@pytest.mark.parametrize("view", ALL_VIEWS, ids=lambda v: v.name)
def test_replaying_any_earlier_event_or_stretch_after_the_end_changes_nothing(view, story_log):
    store = project(view, story_log)
    once = store.snapshot()
    for index, pair in enumerate(story_log):
        store.apply([pair])
        assert store.snapshot() == once, f"replaying {type(pair[1]).__name__} at log index {index}"
    for start in range(0, len(story_log), 11):
        store.apply(story_log[start : start + 40])
        assert store.snapshot() == once, f"replaying from log index {start}"


# ---------------------------------------------------------------------- on real stores (every backend)


@pytest.fixture
def real_stores(env: dict[str, str], service: Any, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A store per view, of the kind that matches the service's backend."""
    module = env.get("PERSISTENCE_MODULE", "eventsourcing.postgres")
    stores: dict[str, Any] = {}
    for view in ALL_VIEWS:
        if module.endswith("popo"):
            stores[view.name] = MemoryViewStore(view)
        elif module.endswith("sqlite"):
            stores[view.name] = SQLiteViewStore(view, tmp_path / "views.db")
        else:
            pool = service.recorder.datastore.pool
            stores[view.name] = PostgresViewStore(view, pool, schema=env["POSTGRES_SCHEMA"])
    yield stores
    for store in stores.values():
        if hasattr(store, "close"):
            store.close()


def catch_up(stores: dict[str, Any], service: Any, batch_size: int) -> None:
    for store in stores.values():
        ViewRunner(store, reader(service), batch_size=batch_size).catch_up()


def test_every_view_caught_up_in_a_real_store_holds_the_rows_of_the_pure_replay(service, clock, real_stores):
    dispatch_story(service, clock)
    catch_up(real_stores, service, batch_size=17)  # half the story, in batches that split transactions
    permission_story(service, clock)
    checkpoint_story(service, clock)
    catch_up(real_stores, service, batch_size=5)
    pairs = log_of(service)
    for view in ALL_VIEWS:
        store = real_stores[view.name]
        assert store.position() == pairs[-1][0]
        assert store.snapshot() == project(view, pairs).snapshot(), view.name


def test_the_queries_answer_the_same_on_a_real_store_as_the_service(service, clock, real_stores):
    full_story(service, clock)
    catch_up(real_stores, service, batch_size=50)
    queue = real_stores["dispatch_queue"]
    assert [r.dispatch_id for r in dispatch_queue.ready(queue, clock.now)] == list(
        service.ready_dispatch_ids(now=clock.now)
    )
    assert [r.dispatch_id for r in dispatch_queue.claimed_by_lease_expiry(queue, 10)] == ["d-m", "d-k"]
    assert [r.dispatch_id for r in dispatch_queue.dead_letters(queue, 10)] == ["d-e", "d-f"]
    runs = real_stores["run_status"]
    assert_run_rows_match_records(runs, service)
    assert run_status.counts_by_status(runs) == {"created": 9, "running": 0, "waiting": 2, "done": 7}
    permissions = real_stores["permission_resolutions"]
    assert [r.tool_call_id for r in permission_resolutions.pending_by_thread(permissions)] == ["call-9"]
    statuses = [r.status for r in permission_resolutions.history_of_run(permissions, "r-p1")]
    assert statuses == ["approved", "denied", "cancelled", "resolved"]
    ranges = real_stores["checkpoint_ranges"]
    assert checkpoint_ranges.run_for_seq(ranges, "t-log", 4) == "r-l2"
    assert checkpoint_ranges.threads_with_gaps(ranges) == []
    feed = real_stores["canonical_feed"]
    assert canonical_feed.feed(feed, 0, 10_000) == service.canonical_events(after=0, limit=10_000)
    assert canonical_feed.feed(feed, 0, 10_000, upstream_only=True) == service.canonical_events(
        after=0, limit=10_000, upstream_only=True
    )
