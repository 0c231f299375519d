"""Spec F: message checkpoints and their repair (all backends).

A run commits its messages at the thread's next seqs: one MessageCommitted per message and
one ThreadMessagesCheckpointed for the range, in one transaction (Z1/Z2/Z15). Repair
re-derives the checkpoints from the log and writes nothing when they are consistent.
"""

from __future__ import annotations

from typing import Any

import pytest

from run_mailbox.domain import InvalidArgument, RunNotFound
from run_mailbox.domain.errors import DuplicateMessage, SeqConflict
from run_mailbox.domain.messages import Message
from run_mailbox.domain.thread_log import thread_log_id

T = "thread-1"

COMMITTED_FIELDS = {
    "thread_id",
    "run_id",
    "message_id",
    "message_seq",
    "role",
    "content_blocks",
    "message_kind",
    "parent_message_id",
    "created_at",
}
CHECKPOINTED_FIELDS = {"thread_id", "run_id", "message_seq_start", "message_seq_end", "message_count", "message_ids"}


# ------------------------------------------------------------------ helpers


def log_length(service) -> int:
    return service.recorder.max_notification_id() or 0


def message_events(service, *, after: int = 0) -> list[Any]:
    kinds = ("MessageCommitted", "ThreadMessagesCheckpointed")
    return [e for e in service.canonical_events(after=after, limit=10_000) if e.kind in kinds]


def committed(service) -> list[dict[str, Any]]:
    """MessageCommitted payloads in log order."""
    return [e.payload for e in message_events(service) if e.kind == "MessageCommitted"]


def msg(message_id: str, role: str = "user", visibility: str = "all", text: str | None = None) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "role": role,
        "visibility": visibility,
        "content": [{"type": "text", "text": text or f"text of {message_id}"}],
    }


def runs(service, *run_ids: str, thread: str = T) -> None:
    for run_id in run_ids:
        service.submit(thread, run_id, dispatch_id=f"d-{run_id}")


def assert_contiguous(payloads: list[dict[str, Any]]) -> None:
    """Seqs are exactly 1..N in log order and each parent is the message before it."""
    assert [p["message_seq"] for p in payloads] == list(range(1, len(payloads) + 1))
    parents = [p["parent_message_id"] for p in payloads]
    assert parents == [None, *(p["message_id"] for p in payloads[:-1])]


# ------------------------------------------------------------------ committing


def test_the_first_commit_takes_seqs_1_to_n_with_message_kinds_and_parents(service, clock):
    """113, payloads 5 and 8."""
    runs(service, "run-a")
    clock.advance(100)
    batch = [
        msg("m-user"),
        msg("m-internal-user", "user", "internal"),
        msg("m-assistant", "assistant"),
        msg("m-tool", "tool"),
        msg("m-system", "system"),
        {**msg("m-internal-system", "system", "internal"), "created_at": 42},
    ]
    result = service.commit_messages(T, "run-a", batch)

    ids = [m["message_id"] for m in batch]
    assert result.model_dump() == {
        "thread_id": T,
        "run_id": "run-a",
        "message_seq_start": 1,
        "message_seq_end": 6,
        "message_ids": ids,
    }
    payloads = committed(service)
    assert [(p["message_id"], p["message_kind"]) for p in payloads] == [
        ("m-user", "user_input"),
        ("m-internal-user", "internal_user_input"),
        ("m-assistant", "assistant_output"),
        ("m-tool", "tool_result"),
        ("m-system", "system"),
        ("m-internal-system", "internal_system"),
    ]
    assert_contiguous(payloads)
    assert [p["role"] for p in payloads] == ["user", "user", "assistant", "tool", "system", "system"]
    assert [p["created_at"] for p in payloads] == [clock.now] * 5 + [42]
    assert [(r.first, r.last) for r in service.get_run("run-a").checkpoints] == [(1, 6)]


def test_content_blocks_are_recorded_verbatim(service):
    """Payloads 7: every content block shape survives as the upstream JSON."""
    runs(service, "run-a")
    blocks = [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0"}},
        {"type": "document", "source": {"type": "url", "url": "https://example.org/a.pdf"}, "title": "A"},
        {"type": "document", "source": {"type": "url", "url": "https://example.org/b.pdf"}},
        {"type": "audio", "source": {"type": "url", "url": "https://example.org/a.ogg"}},
        {"type": "video", "source": {"type": "url", "url": "https://example.org/a.mp4"}},
        {"type": "tool_use", "id": "tu-1", "name": "shell", "input": {"cmd": ["ls", "-l"], "n": 1.5}},
        {"type": "tool_result", "tool_use_id": "tu-1", "content": [{"type": "text", "text": "ok"}]},
        {"type": "thinking", "thinking": "hmm"},
    ]
    service.commit_messages(T, "run-a", [{"message_id": "m-1", "role": "assistant", "content": blocks}])
    assert committed(service)[0]["content_blocks"] == blocks


def test_interleaved_runs_on_one_thread_get_contiguous_seqs_and_ranges_of_their_own(service):
    """Z1: each run's checkpoints name only the seqs it committed."""
    runs(service, "run-a", "run-b")
    first = service.commit_messages(T, "run-a", [msg("m1"), msg("m2", "assistant")])
    middle = service.commit_messages(T, "run-b", [msg("m3")])
    last = service.commit_messages(T, "run-a", [msg("m4", "assistant"), msg("m5", "tool")])

    assert [(r.message_seq_start, r.message_seq_end) for r in (first, middle, last)] == [(1, 2), (3, 3), (4, 5)]
    assert [(r.first, r.last) for r in service.get_run("run-a").checkpoints] == [(1, 2), (4, 5)]
    assert [(r.first, r.last) for r in service.get_run("run-b").checkpoints] == [(3, 3)]
    payloads = committed(service)
    assert_contiguous(payloads)
    assert [p["run_id"] for p in payloads] == ["run-a", "run-a", "run-b", "run-a", "run-a"]


def test_committing_the_same_messages_again_for_the_same_run_is_a_no_op(service):
    runs(service, "run-a", "run-b")
    original = service.commit_messages(T, "run-a", [msg("m1"), msg("m2", "assistant")])
    service.commit_messages(T, "run-b", [msg("m3")])
    head = log_length(service)

    assert service.commit_messages(T, "run-a", [msg("m1"), msg("m2", "assistant")]) == original
    assert service.commit_messages(T, "run-a", [msg("m1"), msg("m2", "assistant")], expected_first_seq=1) == original
    as_models = [Message.model_validate(msg("m1")), Message.model_validate(msg("m2", "assistant"))]
    assert service.commit_messages(T, "run-a", as_models) == original
    assert log_length(service) == head
    assert [(r.first, r.last) for r in service.get_run("run-a").checkpoints] == [(1, 2)]


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("run-a", msg("m1", text="other text")),
        ("run-a", msg("m1", "assistant")),
        ("run-a", msg("m1", "user", "internal")),
        ("run-a", {**msg("m1"), "created_at": 7}),
        ("run-b", msg("m1")),
    ],
    ids=["other-content", "other-role", "other-visibility", "other-created-at", "another-run"],
)
def test_a_reused_message_id_with_other_content_or_from_another_run_is_refused(service, run_id, message):
    runs(service, "run-a", "run-b")
    service.commit_messages(T, "run-a", [{**msg("m1"), "created_at": 5}])
    head = log_length(service)
    with pytest.raises(DuplicateMessage) as refused:
        service.commit_messages(T, run_id, [message])
    assert refused.value.message_id == "m1"
    assert log_length(service) == head


@pytest.mark.parametrize(
    "batch",
    [[msg("m-new"), msg("m1")], [msg("m1"), msg("m2"), msg("m-new")]],
    ids=["new-then-committed", "recommit-plus-new"],
)
def test_a_batch_mixing_committed_and_new_ids_is_refused_and_records_nothing(service, batch):
    runs(service, "run-a")
    service.commit_messages(T, "run-a", [msg("m1"), msg("m2")])
    head = log_length(service)
    with pytest.raises(DuplicateMessage):
        service.commit_messages(T, "run-a", batch)
    assert log_length(service) == head
    assert [p["message_id"] for p in committed(service)] == ["m1", "m2"]


def test_a_refused_batch_names_the_message_id_that_is_already_committed(service):
    runs(service, "run-a")
    service.commit_messages(T, "run-a", [msg("m1")])
    with pytest.raises(DuplicateMessage) as refused:
        service.commit_messages(T, "run-a", [msg("m-new"), msg("m1")])
    assert refused.value.message_id == "m1"


@pytest.mark.parametrize(("expected", "gap_or_overlap"), [(4, "gap"), (2, "overlap"), (1, "overlap")])
def test_an_expected_first_seq_that_would_leave_a_gap_or_overlap_is_refused(service, expected, gap_or_overlap):
    runs(service, "run-a")
    service.commit_messages(T, "run-a", [msg("m1"), msg("m2")])
    head = log_length(service)
    with pytest.raises(SeqConflict) as refused:
        service.commit_messages(T, "run-a", [msg("m3")], expected_first_seq=expected)
    assert (refused.value.expected_first_seq, refused.value.next_seq) == (expected, 3)
    assert log_length(service) == head
    accepted = service.commit_messages(T, "run-a", [msg("m3")], expected_first_seq=3)
    assert accepted.message_seq_start == 3


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([], "messages"),
        ("m1", "messages"),
        ([msg(" ")], "messages[0].message_id"),
        ([msg("")], "messages[0].message_id"),
        ([msg("m1"), msg("m1", "assistant")], "messages"),
        ([msg("m1", "robot")], "messages[0].role"),
        ([{"message_id": "m1", "role": "user", "content": [{"type": "smell"}]}], "messages[0].content[0]"),
    ],
    ids=["empty", "not-a-list", "blank-id", "empty-id", "duplicate-ids", "unknown-role", "unknown-block"],
)
def test_malformed_commits_are_refused_and_record_nothing(service, messages, field):
    runs(service, "run-a")
    head = log_length(service)
    with pytest.raises(InvalidArgument) as refused:
        service.commit_messages(T, "run-a", messages)
    assert refused.value.field == field
    assert log_length(service) == head


def test_a_run_of_another_thread_cannot_commit_to_this_thread(service):
    service.submit("thread-other", "run-x")
    head = log_length(service)
    with pytest.raises(InvalidArgument) as refused:
        service.commit_messages(T, "run-x", [msg("m1")])
    assert refused.value.field == "thread_id"
    assert log_length(service) == head


def test_an_unknown_run_cannot_commit(service):
    with pytest.raises(RunNotFound):
        service.commit_messages(T, "no-such-run", [msg("m1")])


# ------------------------------------------------------------------ canonical events


def test_each_commit_records_one_message_committed_per_message_then_one_checkpoint(service):
    """137: ascending seqs, then the range; nothing else in between."""
    runs(service, "run-a", "run-b")
    head = log_length(service)
    service.commit_messages(T, "run-a", [msg("m1"), msg("m2"), msg("m3")])
    service.commit_messages(T, "run-b", [msg("m4")])

    recorded = service.canonical_events(after=head, limit=10_000, upstream_only=True)
    assert [(e.kind, e.run_id) for e in recorded] == [
        ("MessageCommitted", "run-a"),
        ("MessageCommitted", "run-a"),
        ("MessageCommitted", "run-a"),
        ("ThreadMessagesCheckpointed", "run-a"),
        ("MessageCommitted", "run-b"),
        ("ThreadMessagesCheckpointed", "run-b"),
    ]
    assert [e.idempotency_key for e in recorded] == [
        f"MessageCommitted/{T}/run-a/m1",
        f"MessageCommitted/{T}/run-a/m2",
        f"MessageCommitted/{T}/run-a/m3",
        f"ThreadMessagesCheckpointed/{T}/run-a/1-3",
        f"MessageCommitted/{T}/run-b/m4",
        f"ThreadMessagesCheckpointed/{T}/run-b/4-4",
    ]
    assert [e.correlation_id for e in recorded] == [e.run_id for e in recorded]


def test_checkpoint_events_carry_exactly_the_upstream_payload_fields(service, clock):
    """Payloads 5 (with created_at, Z16) and envelope 0."""
    runs(service, "run-a")
    clock.advance(7)
    service.commit_messages(T, "run-a", [msg("m1"), msg("m2", "assistant")])
    first, second, checkpoint = message_events(service)
    assert set(first.payload) == set(second.payload) == COMMITTED_FIELDS
    assert second.payload == {
        "thread_id": T,
        "run_id": "run-a",
        "message_id": "m2",
        "message_seq": 2,
        "role": "assistant",
        "content_blocks": [{"type": "text", "text": "text of m2"}],
        "message_kind": "assistant_output",
        "parent_message_id": "m1",
        "created_at": clock.now,
    }
    assert checkpoint.payload == {
        "thread_id": T,
        "run_id": "run-a",
        "message_seq_start": 1,
        "message_seq_end": 2,
        "message_count": 2,
        "message_ids": ["m1", "m2"],
    }
    assert set(checkpoint.payload) == CHECKPOINTED_FIELDS
    for event in (first, second, checkpoint):
        assert event.upstream is True
        assert event.scopes == [
            {"scope_type": "thread", "thread_id": T},
            {"scope_type": "run", "run_id": "run-a"},
        ]
        assert (event.visibility, event.writer_id, event.causation_id) == ("public", "mailbox", None)


# ------------------------------------------------------------------ repair


def test_repair_on_a_consistent_multi_run_thread_writes_nothing_however_often_it_runs(service):
    """130, Z1: nothing is republished under later runs; the report counts what it checked."""
    runs(service, "run-a", "run-b", "run-c")
    runs(service, "run-z", thread="thread-2")
    service.commit_messages(T, "run-a", [msg("m1"), msg("m2")])
    service.commit_messages(T, "run-b", [msg("m3")])
    service.commit_messages(T, "run-a", [msg("m4")])
    service.commit_messages(T, "run-c", [msg("m5"), msg("m6"), msg("m7")])
    service.commit_messages("thread-2", "run-z", [msg("m1")])
    head, transactions = log_length(service), service.transactions

    first = service.repair_checkpoints()
    second = service.repair_checkpoints()

    assert first == second
    assert first.model_dump() == {
        "threads_checked": 2,
        "runs_checked": 4,
        "messages_checked": 8,
        "ranges_checked": 5,
        "repaired_ranges": [],
    }
    assert log_length(service) == head
    assert service.transactions == transactions


def test_repair_records_a_missing_range_once_under_the_run_that_committed_it(service, clock):
    """130, Z1: a log written without checkpoint events (as an older writer would leave it)
    gets exactly the missing range, under its own run; earlier runs' ranges are untouched."""
    runs(service, "run-a", "run-b")
    service.commit_messages(T, "run-a", [msg("m1"), msg("m2")])
    log = service.repository.get(thread_log_id(T))
    orphans = log.append(run_id="run-b", messages=[Message.model_validate(msg(m)) for m in ("m3", "m4")], now=clock.now)
    service.save(log, *orphans)
    head = log_length(service)

    report = service.repair_checkpoints()

    assert [(r.run_id, r.message_seq_start, r.message_seq_end, r.message_ids) for r in report.repaired_ranges] == [
        ("run-b", 3, 4, ["m3", "m4"])
    ]
    assert (report.runs_checked, report.messages_checked, report.ranges_checked) == (2, 4, 1)
    repaired = [(e.kind, e.run_id, e.idempotency_key) for e in message_events(service, after=head)]
    assert repaired == [("ThreadMessagesCheckpointed", "run-b", f"ThreadMessagesCheckpointed/{T}/run-b/3-4")]
    assert [(r.first, r.last) for r in service.get_run("run-b").checkpoints] == [(3, 4)]
    assert [(r.first, r.last) for r in service.get_run("run-a").checkpoints] == [(1, 2)]

    head = log_length(service)
    again = service.repair_checkpoints()
    assert again.repaired_ranges == []
    assert again.ranges_checked == 2
    assert log_length(service) == head


def test_a_thousand_messages_committed_in_batches_of_fifty_stay_contiguous(service):
    runs(service, "run-a", "run-b")
    for batch in range(20):
        run_id = "run-a" if batch % 2 == 0 else "run-b"
        ids = [f"m{batch * 50 + i + 1}" for i in range(50)]
        result = service.commit_messages(
            T, run_id, [msg(m, "assistant" if i % 2 else "user") for i, m in enumerate(ids)]
        )
        assert (result.message_seq_start, result.message_seq_end) == (batch * 50 + 1, batch * 50 + 50)

    payloads = committed(service)
    assert len(payloads) == 1_000
    assert payloads[-1]["message_seq"] == 1_000
    assert payloads[-1]["message_id"] == "m1000"
    assert_contiguous(payloads)
    assert len(service.get_run("run-a").checkpoints) == len(service.get_run("run-b").checkpoints) == 10
    report = service.repair_checkpoints()
    assert (report.messages_checked, report.ranges_checked, report.repaired_ranges) == (1_000, 20, [])


def test_a_repair_checkpoint_for_messages_the_run_did_not_commit_is_refused(service):
    """Found by the fuzz test: RepairCheckpoint accepted any seqs, and a checkpoint over messages
    that do not exist broke the thread's invariants (and their check)."""
    from run_mailbox.domain.commands import RepairCheckpoint
    from run_mailbox.domain.errors import InvalidArgument

    service.submit("t1", "r1", dispatch_id="d1", now=1_000)
    service.submit("t2", "r2", dispatch_id="d2", now=1_000)
    service.commit_messages("t1", "r1", [{"message_id": "m1", "role": "user", "content": []}], now=1_001)
    length = service.recorder.max_notification_id()
    for command in (
        RepairCheckpoint("t1", "r1", {2: "m2"}),  # no such message
        RepairCheckpoint("t1", "r1", {2: "m1"}),  # committed at another seq
        RepairCheckpoint("t2", "r2", {1: "m1"}),  # on another thread
        RepairCheckpoint("t1", "r2", {1: "m1"}),  # the run is on another thread
    ):
        with pytest.raises(InvalidArgument):
            service.execute(command)
    assert service.recorder.max_notification_id() == length
    assert service.execute(RepairCheckpoint("t1", "r1", {1: "m1"})) == []  # already checkpointed
