"""Logs written by earlier versions of run-mailbox still read back, on every backend, forever.

Each folder here is a golden log, written once and checked in (see ``write_golden_log.py``):
the stored events and snapshots, and what the code of its day read from them (the canonical
export and every dispatch, run and thread-mailbox record). Loaded raw into a fresh store of each
backend, every event must decode, every aggregate must fold to the same record (from its events
alone and from its snapshot), the canonical export must be identical, and every view must build
and verify against a fresh replay.

``legacy-0.1.0`` was written by run-mailbox 0.1.0, whose stored topics were module paths;
``v1`` by the first version with stable event names; ``v2`` by the first version whose states leave
the originator's id and version to the row, and whose new threads' mailboxes open with their first
dispatch. A deliberate change to a stored shape since is listed in ``SINCE`` (with the upcaster that
reads the old shape), and applied to the expected records here, by hand, so this test does not trust
the code under test to say what changed.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent

from run_mailbox.domain.ids import dispatch_aggregate_id, mailbox_aggregate_id, run_aggregate_id
from run_mailbox.infrastructure.service import MailboxService
from run_mailbox.infrastructure.views.host import ViewHost
from run_mailbox.infrastructure.views.pages import LogPages
from run_mailbox.projections.runner import ViewRunner
from run_mailbox.projections.stores import MemoryViewStore
from run_mailbox.projections.views import ALL_VIEWS

HERE = Path(__file__).parent
GOLDEN = sorted(p.name for p in HERE.iterdir() if (p / "events.jsonl.gz").exists())

Change = Callable[[str, dict[str, Any]], None]  # (record kind, expected record) -> edits it in place


def decision_pending_after_renamed(kind: str, record: dict[str, Any]) -> None:
    """Run record version 2: a decision's ``pending_after`` is called ``pending_tool_calls``."""
    for decision in record.get("decisions", []) if kind == "run" else []:
        decision["pending_tool_calls"] = decision.pop("pending_after")


def run_redrive_of_added(kind: str, record: dict[str, Any]) -> None:
    """Run record version 3 (and RunCreated version 2): ``redrive_of``, None for every run before it."""
    if kind == "run":
        record["redrive_of"] = None


# Deliberate changes of stored shapes since each golden log was written, in the order they were made.
# (DispatchDeadLettered version 2 renamed its ``cause`` to ``reason``: no record holds it, and the
# canonical payload always called it ``reason``, so only decoding shows it, in every test here. Version 2
# of every event, 3 of those two, left the originator's id and version to the row; MailboxOpened version 3
# admits the first dispatch, where a DispatchAdmitted followed: no record changes.)
SINCE: dict[str, list[Change]] = {
    "legacy-0.1.0": [decision_pending_after_renamed, run_redrive_of_added],
    "v1": [decision_pending_after_renamed, run_redrive_of_added],
    "v2": [],
}


def lines(folder: str, name: str) -> Iterator[dict[str, Any]]:
    with gzip.open(HERE / folder / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def stored(rows: Iterator[dict[str, Any]]) -> list[StoredEvent]:
    return [
        StoredEvent(
            originator_id=UUID(row["originator_id"]),
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=row["state"].encode(),
        )
        for row in rows
    ]


@pytest.fixture(params=GOLDEN)
def golden(request: pytest.FixtureRequest, env: dict[str, str]) -> Iterator[tuple[str, MailboxService]]:
    """A fresh store of each backend holding the golden log, its snapshots and a rebuilt dispatch index."""
    folder = request.param
    service = MailboxService(env=env)
    events = stored(lines(folder, "events"))
    for start in range(0, len(events), 500):
        service.recorder.insert_events(events[start : start + 500])
    assert service.snapshots is not None
    service.snapshots.recorder.insert_events(stored(lines(folder, "snapshots")))
    service.rebuild_dispatch_index()
    yield folder, service
    service.close()


def expected_records(folder: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for row in lines(folder, "records"):
        ((kind, record),) = row.items()
        for change in SINCE[folder]:
            change(kind, record)
        yield kind, record


def test_every_stored_event_of_a_golden_log_decodes(golden):
    folder, service = golden
    topics = Counter(row["topic"] for row in lines(folder, "events"))
    notifications = service.recorder.select_notifications(start=0, limit=100_000)
    assert len(notifications) == sum(topics.values())
    decoded = Counter(type(service.mapper.to_domain_event(n)).TOPIC for n in notifications)
    assert len(decoded) == 28, "every event kind is in the golden log"
    assert sum(decoded.values()) == sum(topics.values())


def test_every_aggregate_of_a_golden_log_folds_to_its_recorded_state(golden):
    folder, service = golden
    ids = {"dispatch": dispatch_aggregate_id, "run": run_aggregate_id, "mailbox": mailbox_aggregate_id}
    keys = {"dispatch": "dispatch_id", "run": "run_id", "mailbox": "thread_id"}
    checked = Counter()
    for kind, expected in expected_records(folder):
        aggregate_id = ids[kind](expected[keys[kind]])
        from_events = service.unsnapshotted.get(aggregate_id).record.model_dump(mode="json")
        from_snapshot = service.repository.get(aggregate_id).record.model_dump(mode="json")
        assert from_events == expected, f"{kind} {expected[keys[kind]]} folded from its events"
        assert from_snapshot == expected, f"{kind} {expected[keys[kind]]} read through its snapshot"
        checked[kind] += 1
    assert checked["dispatch"] > 100 and checked["run"] > 90 and checked["mailbox"] > 30


def test_the_canonical_export_of_a_golden_log_is_unchanged(golden):
    folder, service = golden
    exported = [json.loads(event.to_json_line()) for event in service.iter_canonical_events()]
    assert exported == list(lines(folder, "canonical"))


def test_every_view_builds_from_a_golden_log_and_agrees_with_a_fresh_replay(golden):
    folder, service = golden
    host = ViewHost(service)
    try:
        applied = host.catch_up()
        assert all(count > 0 for count in applied.values()), applied
        diffs, problems = host.verify()
        assert [d for d in diffs if d.differences] == []
        assert problems == []
        feed = host.store("canonical_feed").select("canonical_feed")
        assert len(feed) == sum(1 for _ in lines(folder, "canonical"))
    finally:
        host.close()


def test_a_view_decodes_only_the_kinds_it_handles_and_builds_what_every_event_builds(golden):
    """Each view caught up through the host's page reader, which decodes only the events of the
    classes the view ``handles``, has the rows and the position of a store handed every event of
    the golden log (all 28 kinds): no view ignores a kind it needs, and none is handed the mailboxes'
    bookkeeping it never reads."""
    _, service = golden
    pages = LogPages(service)
    end = service.recorder.max_notification_id()
    every = pages(0, 100_000)
    for view in ALL_VIEWS:
        reader = CountingPages(service)
        filtered, whole = MemoryViewStore(view), MemoryViewStore(view)
        ViewRunner(filtered, reader, batch_size=50, read_ahead=True).catch_up()
        whole.apply(every)
        assert filtered.position() == whole.position() == end, view.name
        assert filtered.snapshot() == whole.snapshot(), view.name
        assert reader.decoded == [p for p, event in every if isinstance(event, view.handles)], view.name
        assert 0 < len(reader.decoded) < len(every), view.name


class CountingPages(LogPages):
    """The host's page reader, keeping the positions of the events it decoded."""

    def __init__(self, service: MailboxService) -> None:
        super().__init__(service)
        self.decoded: list[int] = []

    def decode(self, rows, kinds=None):
        pairs = super().decode(rows, kinds)
        self.decoded.extend(position for position, _ in pairs)
        return pairs
