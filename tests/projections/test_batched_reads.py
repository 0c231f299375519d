"""Batched reads and bulk writes: a view names the rows a batch will read (``prefetch``), the
stores load them with one query per table, ``BufferedTx`` answers reads from them, and the
Postgres store writes many rows through COPY. Whatever path a row takes, the stores end with
the rows a pure replay gives.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest

from run_mailbox.domain.model import DomainEvent
from run_mailbox.projections.runner import ViewRunner
from run_mailbox.projections.schema import Column, Table
from run_mailbox.projections.stores import MemoryViewStore
from run_mailbox.projections.stores import postgres_write as postgres_store
from run_mailbox.projections.stores import sqlite as sqlite_store
from run_mailbox.projections.view import BufferedTx, ViewTx
from run_mailbox.projections.views import ALL_VIEWS
from tests.projections._dict_tx import project
from tests.projections._toy_view import StoreFactory, log_reader, record_history
from tests.projections.test_views import catch_up, checkpoint_story, dispatch_story, log_of, permission_story

TICKETS = Table(
    "tickets",
    (
        Column("run_id", "text", nullable=False),
        Column("call", "int", nullable=False),
        Column("status", "text", nullable=False),
        Column("detail", "json"),
    ),
    key=("run_id", "call"),
)


class Committed:
    """Committed rows behind a ``BufferedTx``, counting the single-key loads and scans it asks for."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = {TICKETS.key_of(r): TICKETS.normalise(r) for r in rows}
        self.loads = 0
        self.scans = 0

    def load(self, table: Table, key: tuple[Any, ...]) -> dict[str, Any] | None:
        self.loads += 1
        return self.rows.get(key)

    def scan(self, table: Table, where: dict[str, Any]) -> list[dict[str, Any]]:
        self.scans += 1
        return [r for r in self.rows.values() if all(r[k] == v for k, v in where.items())]

    def with_prefix(self, length: int, prefixes: Sequence[tuple[Any, ...]]) -> list[dict[str, Any]]:
        return [r for k, r in self.rows.items() if k[:length] in set(prefixes)]

    def tx(self) -> BufferedTx:
        return BufferedTx({"tickets": TICKETS}, self.load, self.scan)


def ticket(run_id: str, call: int, status: str = "pending") -> dict[str, Any]:
    return {"run_id": run_id, "call": call, "status": status, "detail": {"calls": [call]}}


def test_prefetched_rows_answer_reads_without_a_query_per_key_and_missing_keys_read_as_none():
    committed = Committed([ticket("r1", 1), ticket("r2", 1), ticket("r2", 3, "done"), ticket("r3", 1)])
    tx = committed.tx()
    whole = [("r1", 1), ("r1", 2)]
    tx.preload("tickets", 2, whole, committed.with_prefix(2, whole))
    tx.preload("tickets", 1, [("r2",), ("r9",)], committed.with_prefix(1, [("r2",), ("r9",)]))

    assert tx.get("tickets", ("r1", 1)) == ticket("r1", 1)
    assert tx.get("tickets", ("r1", 2)) is None  # named and absent
    assert tx.get("tickets", ("r2", 3)) == ticket("r2", 3, "done")  # under a named prefix
    assert tx.get("tickets", ("r2", 2)) is None and tx.get("tickets", ("r9", 5)) is None
    assert [r["call"] for r in tx.rows("tickets", {"run_id": "r2"})] == [1, 3]
    assert tx.rows("tickets", {"run_id": "r2", "status": "done"}) == [ticket("r2", 3, "done")]
    assert tx.rows("tickets", {"run_id": "r9"}) == []
    assert (committed.loads, committed.scans) == (0, 0)

    assert [tx.exists("tickets", k) for k in [("r1", 1), ("r1", 2), ("r2", 7), ("r3", 1)]] == [True, False, False, None]
    assert tx.get("tickets", ("r3", 1)) == ticket("r3", 1)  # not named: one load, then cached
    assert tx.get("tickets", ("r3", 1)) == ticket("r3", 1)
    assert tx.rows("tickets", {"run_id": "r3"}) == [ticket("r3", 1)]
    assert (committed.loads, committed.scans) == (1, 1)


def test_rows_follow_the_batch_writes_that_move_a_row_into_or_out_of_a_filter():
    committed = Committed([ticket("r1", 1), ticket("r1", 2)])
    tx = committed.tx()
    tx.preload("tickets", 1, [("r1",)], committed.with_prefix(1, [("r1",)]))

    def calls(status: str) -> list[int]:
        return [r["call"] for r in tx.rows("tickets", {"run_id": "r1", "status": status})]

    assert calls("pending") == [1, 2] and calls("done") == []
    tx.upsert("tickets", ticket("r1", 2, "done"))
    tx.upsert("tickets", ticket("r1", 3))
    assert calls("pending") == [1, 3] and calls("done") == [2]
    tx.upsert("tickets", ticket("r1", 3, "done"))
    tx.delete("tickets", ("r1", 1))
    assert calls("pending") == [] and calls("done") == [2, 3]
    tx.upsert("tickets", ticket("r1", 1))
    assert calls("pending") == [1] and tx.get("tickets", ("r1", 1)) == ticket("r1", 1)
    assert committed.loads == 0
    upserts, deletes = tx.writes("tickets")
    assert sorted((r["call"], r["status"]) for r in upserts) == [(1, "pending"), (2, "done"), (3, "done")]
    assert deletes == []


def test_rows_read_from_a_batch_are_copies_the_handler_may_change():
    committed = Committed([ticket("r1", 1)])
    tx = committed.tx()
    tx.preload("tickets", 2, [("r1", 1)], committed.with_prefix(2, [("r1", 1)]))
    row = tx.get("tickets", ("r1", 1))
    assert row is not None
    row["detail"]["calls"].append(99)
    tx.rows("tickets", {"run_id": "r1"})[0]["detail"]["calls"].append(98)
    assert tx.get("tickets", ("r1", 1)) == ticket("r1", 1)
    detail = {"calls": [7]}
    tx.upsert("tickets", {**ticket("r1", 7), "detail": detail})
    detail["calls"].append(8)  # the handler changes its value after the upsert: the batch keeps what it wrote
    assert tx.get("tickets", ("r1", 7)) == ticket("r1", 7)


class Colour(StrEnum):
    RED = "red"


def test_json_columns_hold_what_a_json_round_trip_gives():
    value = {"t": (1, 2.5, "x"), "e": Colour.RED, "n": None, "b": True, "nested": [{"k": [()]}], 3: "int key"}
    row = TICKETS.normalise({"run_id": "r", "call": 1, "status": "s", "detail": value})
    assert row["detail"] == {
        "t": [1, 2.5, "x"],
        "e": "red",
        "n": None,
        "b": True,
        "nested": [{"k": [[]]}],
        "3": "int key",
    }
    plain = {"a": [1, {"b": "c"}]}
    stored = TICKETS.normalise({"run_id": "r", "call": 1, "status": "s", "detail": plain})["detail"]
    plain["a"][1]["b"] = "changed"
    assert stored == {"a": [1, {"b": "c"}]}
    for bad in (math.nan, [math.inf], {"x": -math.inf}):
        with pytest.raises(ValueError):
            TICKETS.normalise({"run_id": "r", "call": 1, "status": "s", "detail": bad})
    with pytest.raises(TypeError):
        TICKETS.normalise({"run_id": "r", "call": 1, "status": "s", "detail": {"x": object()}})
    with pytest.raises(TypeError):
        TICKETS.normalise({"run_id": "r", "call": True, "status": "s", "detail": None})
    with pytest.raises(ValueError, match="missing columns \\['detail'\\], unknown columns \\['extra'\\]"):
        TICKETS.normalise({"run_id": "r", "call": 1, "status": "s", "extra": 1})
    assert TICKETS.column_names == ("run_id", "call", "status", "detail")


# ---------------------------------------------------------------------- real stores


@pytest.fixture
def every_write_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Postgres writes every group of rows through COPY (not executemany); SQLite loads prefetched
    keys two parameters at a time (so every batch needs several statements)."""
    monkeypatch.setattr(postgres_store, "SMALL", 0)
    monkeypatch.setattr(sqlite_store, "MAX_PARAMS", 2)


@pytest.fixture
def make_store(env: dict[str, str], service: Any, tmp_path: Path) -> Iterator[StoreFactory]:
    factory = StoreFactory(env, service, tmp_path)
    yield factory
    factory.close()


def test_every_view_holds_the_rows_of_the_pure_replay_whichever_way_its_rows_are_read_and_written(
    service, clock, make_store, every_write_path
):
    stores = {view.name: make_store(view, prefix=f"b{i}") for i, view in enumerate(ALL_VIEWS)}
    dispatch_story(service, clock)
    catch_up(stores, service, batch_size=23)
    permission_story(service, clock)
    checkpoint_story(service, clock)
    catch_up(stores, service, batch_size=9)
    pairs = log_of(service)
    for view in ALL_VIEWS:
        assert stores[view.name].position() == pairs[-1][0]
        assert stores[view.name].snapshot() == project(view, pairs).snapshot(), view.name


SLOTS = "slots"


class BlindSlots:
    """Writes five slots over and over without reading them (the store cannot know a row is new)."""

    name = "slots"
    tables = (
        Table(
            SLOTS,
            (
                Column("slot", "text", nullable=False),
                Column("first", "int", nullable=False),
                Column("last", "int", nullable=False),
                Column("kinds", "json", nullable=False),
            ),
            key=("slot",),
        ),
    )

    @staticmethod
    def slot(position: int) -> str:
        return f'slot {position % 5} "quoted" \\ {{a,b}} NULL'  # every character an array literal escapes

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None:
        tx.upsert(SLOTS, {"slot": self.slot(position), "first": 0, "last": position, "kinds": [event.kind()]})


class ReadingSlots(BlindSlots):
    """The same slots, read first (and named in ``prefetch``) to keep the first position and all kinds."""

    def prefetch(self, batch: Sequence[tuple[int, DomainEvent]]) -> dict[str, set[tuple[Any, ...]]]:
        return {SLOTS: {(self.slot(position),) for position, _ in batch}}

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None:
        row = tx.get(SLOTS, (self.slot(position),))
        if row is not None and row["last"] >= position:
            return
        kinds = sorted({*(row["kinds"] if row else []), event.kind()})
        first = row["first"] if row else position
        tx.upsert(SLOTS, {"slot": self.slot(position), "first": first, "last": position, "kinds": kinds})


@pytest.mark.parametrize("view", [BlindSlots(), ReadingSlots()], ids=["blind", "reading"])
def test_rows_rewritten_batch_after_batch_end_as_the_memory_store_holds_them(
    service, clock, make_store, every_write_path, view
):
    end = record_history(service, clock, cycles=3)
    read_page = log_reader(service)
    store = make_store(view, prefix="slots")
    ViewRunner(store, read_page, batch_size=6).catch_up()  # every batch rewrites rows earlier batches wrote
    memory = MemoryViewStore(view)
    ViewRunner(memory, read_page, batch_size=1000).catch_up()
    assert store.position() == memory.position() == end
    snapshot = store.snapshot()
    assert snapshot == memory.snapshot()
    assert len(snapshot[SLOTS]) == 5
    assert store.select(SLOTS, {"slot": BlindSlots.slot(end)}) == [r for r in snapshot[SLOTS] if r["last"] == end]
