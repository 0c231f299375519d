"""View stores on every backend: exactly-once apply, rebuild equals incremental, swap-in is all or nothing.

Each test records real dispatch events through a ``MailboxService`` and runs the toy view
into the store that matches the service's backend (memory, SQLite file, Postgres schema).
"""

from __future__ import annotations

import psycopg
import pytest

from run_mailbox.projections.runner import ViewRunner, rebuild
from run_mailbox.projections.schema import Document
from run_mailbox.projections.stores import MemoryViewStore, PostgresViewStore
from run_mailbox.projections.view import RebuildBehind
from tests.projections._toy_view import (
    DELIVERIES,
    DISPATCHES,
    OPEN,
    THREADS,
    ToyView,
    log_reader,
    record_history,
    replayed,
)


def test_incremental_catch_up_equals_a_rebuild_from_zero_and_a_second_rebuild(service, clock, make_store):
    store = make_store()
    read_page = log_reader(service)
    record_history(service, clock, cycles=5)
    ViewRunner(store, read_page, batch_size=7).catch_up()
    end = record_history(service, clock, cycles=5)
    ViewRunner(store, read_page, batch_size=13).catch_up()
    incremental = store.snapshot()
    assert store.position() == end
    assert incremental[DISPATCHES] and incremental[THREADS] and incremental[OPEN]
    assert incremental == replayed(service)

    assert rebuild(store, read_page, batch_size=31) == end
    assert store.snapshot() == incremental
    assert rebuild(store, read_page, batch_size=500) == end
    assert store.snapshot() == incremental


def test_a_redelivered_batch_applies_nothing_and_changes_nothing(service, clock, make_store):
    store = make_store()
    end = record_history(service, clock, cycles=4)
    events = log_reader(service)(0, end)
    assert store.apply(events[:40]) == 40
    before = store.snapshot()
    assert store.apply(events[:40]) == 0
    assert store.apply(events[25:40]) == 0
    assert store.snapshot() == before
    assert store.position() == events[39][0]


def test_a_batch_overlapping_the_tracked_position_applies_only_the_new_part(service, clock, make_store):
    store = make_store()
    end = record_history(service, clock, cycles=4)
    events = log_reader(service)(0, end)
    store.apply(events[:20])
    assert store.apply(events[10:60]) == 40
    assert store.position() == events[59][0]
    whole = MemoryViewStore(ToyView())
    whole.apply(events[:60])
    assert store.snapshot() == whole.snapshot()
    handled = sum(row["handled"] for row in store.snapshot()[DELIVERIES])
    assert handled == sum(1 for _, event in events[:60] if hasattr(event, "dispatch"))


def test_apply_through_a_later_position_moves_the_store_past_events_it_was_not_handed(service, clock, make_store):
    """``through``: the events between the batch's last and that position were read and are not the
    view's; the store's position goes there, once, and an older ``through`` never moves it back."""
    store = make_store()
    end = record_history(service, clock, cycles=4)
    events = log_reader(service)(0, end)
    assert store.apply(events[:10], through=events[19][0]) == 10
    assert store.position() == events[19][0]
    assert store.apply([], through=events[29][0]) == 0
    assert store.position() == events[29][0]
    assert store.apply(events[20:30], through=events[29][0]) == 0  # re-delivered: nothing new
    assert store.apply([], through=events[5][0]) == 0
    assert store.position() == events[29][0]
    whole = MemoryViewStore(ToyView())
    whole.apply(events[:10])
    assert store.snapshot() == whole.snapshot()


def test_a_handler_that_raises_leaves_the_store_as_it_was(service, clock, make_store):
    class FailsAtTwentyFive(ToyView):
        def handle(self, position, event, tx):
            if position == 25:
                raise RuntimeError("handler bug")
            super().handle(position, event, tx)

    store = make_store(FailsAtTwentyFive())
    end = record_history(service, clock, cycles=4)
    events = log_reader(service)(0, end)
    store.apply(events[:10])
    before = store.snapshot()
    with pytest.raises(RuntimeError, match="handler bug"):
        store.apply(events[10:40])
    with pytest.raises(RuntimeError, match="handler bug"):
        store.apply(events[10:40], through=events[49][0])
    assert store.position() == events[9][0]
    assert store.snapshot() == before


def test_swap_in_makes_the_rebuilt_rows_visible_and_the_old_rows_gone(service, clock, make_store):
    view = ToyView()
    view.buggy = True
    live = make_store(view)
    read_page = log_reader(service)
    end = record_history(service, clock, cycles=4)
    ViewRunner(live, read_page).catch_up()
    stale = live.snapshot()
    assert {row["status"] for row in stale[DISPATCHES]} == {"BOGUS"}

    view.buggy = False  # the view's bug is fixed; the rows already written are still wrong
    scratch = live.begin_rebuild()
    assert scratch.position() == 0 and all(rows == [] for rows in scratch.snapshot().values())
    ViewRunner(scratch, read_page, batch_size=10).catch_up()
    assert live.snapshot() == stale  # readers of the live view see nothing of the half-built one

    live.swap_in(scratch)
    fixed = live.snapshot()
    assert live.position() == end
    assert fixed == replayed(service)
    assert "BOGUS" not in {row["status"] for row in fixed[DISPATCHES]}
    assert not [row for row in fixed[OPEN] if row["dispatch_id"] == "ghost"]
    assert live.select(OPEN, {"dispatch_id": "ghost"}) == []

    record_history(service, clock, cycles=1)
    assert ViewRunner(live, read_page).catch_up() > 0  # the swapped-in tables keep taking events
    assert live.snapshot() == replayed(service)
    assert rebuild(live, read_page) == live.position()  # and can be rebuilt again
    assert live.snapshot() == replayed(service)


def test_swap_in_refuses_a_rebuild_that_is_behind_the_live_view(service, clock, make_store):
    live = make_store()
    read_page = log_reader(service)
    record_history(service, clock, cycles=3)
    ViewRunner(live, read_page).catch_up()
    scratch = live.begin_rebuild()
    ViewRunner(scratch, read_page).catch_up()
    record_history(service, clock, cycles=1)
    ViewRunner(live, read_page).catch_up()
    before = live.snapshot()

    with pytest.raises(RebuildBehind):
        live.swap_in(scratch)
    assert live.snapshot() == before

    ViewRunner(scratch, read_page).catch_up()
    live.swap_in(scratch)
    assert live.snapshot() == before == replayed(service)


def test_select_filters_on_equality_and_null_orders_and_limits(service, clock, make_store):
    store = make_store()
    record_history(service, clock, cycles=6)
    for thread_id in ("leased-1", "leased-2"):
        service.submit(thread_id, f"run-{thread_id}")
        service.claim(thread_id, consumer_id="worker", lease_ms=5_000)
        clock.advance(10)
    ViewRunner(store, log_reader(service)).catch_up()
    rows = store.snapshot()[DISPATCHES]

    by_thread = store.select(DISPATCHES, {"thread_id": "thread-1", "terminal": True}, order_by=["-attempt_count"])
    assert by_thread and all(r["thread_id"] == "thread-1" and r["terminal"] for r in by_thread)
    counts = [r["attempt_count"] for r in by_thread]
    assert counts == sorted(counts, reverse=True)
    assert len(by_thread) == sum(1 for r in rows if r["thread_id"] == "thread-1" and r["terminal"])

    unleased = store.select(DISPATCHES, {"lease_until": None})
    assert {r["dispatch_id"] for r in unleased} == {r["dispatch_id"] for r in rows if r["lease_until"] is None}

    by_lease = store.select(DISPATCHES, order_by=["lease_until"], limit=len(unleased) + 1)
    assert len(unleased) < len(rows) - 1
    assert [r["lease_until"] for r in by_lease[:-1]] == [None] * len(unleased)  # NULL sorts first
    assert by_lease[-1]["lease_until"] is not None
    leased = store.select(DISPATCHES, order_by=["-lease_until"], limit=2)
    assert [r["thread_id"] for r in leased] == ["leased-2", "leased-1"]  # descending: latest lease first
    ids = [r["dispatch_id"] for r in store.select(DISPATCHES, order_by=["status"])]
    assert ids == [r["dispatch_id"] for r in sorted(rows, key=lambda r: (r["status"], r["dispatch_id"]))]
    assert store.select(DISPATCHES, limit=3) == rows[:3]


def test_every_store_holds_the_values_the_memory_store_holds(service, clock, make_store):
    store = make_store()
    record_history(service, clock, cycles=3)
    ViewRunner(store, log_reader(service)).catch_up()
    snapshot = store.snapshot()
    assert snapshot == replayed(service)
    thread = snapshot[THREADS][0]
    assert isinstance(thread["has_open"], bool) and isinstance(thread["kinds"], dict)
    assert isinstance(snapshot[DISPATCHES][0]["detail"]["epoch"], int)


def test_a_row_missing_a_column_is_refused_and_nothing_is_written(service, clock, make_store):
    class ForgetsAColumn(ToyView):
        def handle(self, position, event, tx):
            tx.upsert(THREADS, {"thread_id": "t", "events": 1})

    store = make_store(ForgetsAColumn())
    end = record_history(service, clock, cycles=1)
    with pytest.raises(ValueError, match="missing columns"):
        store.apply(log_reader(service)(0, end))
    assert store.position() == 0
    assert store.select(THREADS) == []


def test_a_dropped_view_starts_again_empty_at_position_zero(service, clock, make_store):
    store = make_store(prefix="gone")
    record_history(service, clock, cycles=2)
    ViewRunner(store, log_reader(service)).catch_up()
    assert store.position() > 0
    store.drop()
    again = make_store(prefix="gone")
    assert again.position() == 0
    assert all(rows == [] for rows in again.snapshot().values())


@pytest.mark.postgres
def test_a_postgres_store_built_from_the_service_settings_shares_the_view_with_one_on_the_service_pool(
    pg_service, postgres_env, clock
):
    from run_mailbox.infrastructure.settings import resolve_env

    end = record_history(pg_service, clock, cycles=2)
    pool = pg_service.recorder.datastore.pool
    on_pool = PostgresViewStore(ToyView(), pool, schema=postgres_env["POSTGRES_SCHEMA"], prefix="shared")
    ViewRunner(on_pool, log_reader(pg_service)).catch_up()
    own = PostgresViewStore.from_env(ToyView(), resolve_env(postgres_env), prefix="shared")
    try:
        assert own.position() == end
        assert own.snapshot() == on_pool.snapshot() == replayed(pg_service)
    finally:
        own.close()


def test_a_handed_over_document_is_stored_as_given_and_refused_where_a_plain_value_would_be(service, clock, make_store):
    """``Document`` skips the copy and check of a json value, not the column's type or nullability."""

    class HandsOver(ToyView):
        document: object = Document({"nested": [1, "two", {"three": None}], "ok": True})
        column = "kinds"

        def handle(self, position, event, tx):
            row = {"thread_id": "t", "events": 1, "last_position": position, "open_count": 0, "has_open": False}
            tx.upsert(THREADS, {**row, "kinds": {}, self.column: self.document})

    end = record_history(service, clock, cycles=1)
    store = make_store(HandsOver(), prefix="doc")
    store.apply(log_reader(service)(0, end))
    assert store.select(THREADS) == [
        {
            "thread_id": "t",
            "events": 1,
            "last_position": end,
            "open_count": 0,
            "has_open": False,
            "kinds": {"nested": [1, "two", {"three": None}], "ok": True},
        }
    ]

    for column, document, error in (
        ("thread_id", Document("t"), TypeError),  # a text column takes no Document
        ("kinds", Document(None), ValueError),  # a non-nullable json column takes no null, handed over or not
    ):
        wrong = HandsOver()
        wrong.column, wrong.document = column, document
        bad = make_store(wrong, prefix=f"bad_{column}")
        with pytest.raises(error):
            bad.apply(log_reader(service)(0, end))
        assert bad.position() == 0 and bad.select(THREADS) == []


@pytest.mark.postgres
def test_a_view_table_made_with_jsonb_before_keeps_taking_writes_and_a_rebuild_makes_it_json(
    pg_service, postgres_env, clock
):
    """View tables made before json columns became ``json`` are ``jsonb``: the few-row upsert and the
    COPY still write them the same rows, and a rebuild swaps in ``json`` tables."""
    url, schema = postgres_env["MAILBOX_DATABASE_URL"], postgres_env["POSTGRES_SCHEMA"]

    def json_types(prefix: str) -> set[str]:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT data_type FROM information_schema.columns WHERE table_schema = %s"
                " AND table_name IN (%s, %s) AND column_name IN ('kinds', 'detail')",
                [schema, f"{prefix}_{THREADS}", f"{prefix}_{DISPATCHES}"],
            ).fetchall()
        return {r[0] for r in rows}

    pool = pg_service.recorder.datastore.pool
    stores = {p: PostgresViewStore(ToyView(), pool, schema=schema, prefix=p) for p in ("few", "copied")}
    with psycopg.connect(url, autocommit=True) as conn:
        for prefix in stores:
            for table, column in ((THREADS, "kinds"), (DISPATCHES, "detail")):
                conn.execute(
                    f'ALTER TABLE "{schema}"."{prefix}_{table}" ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb'
                )
    assert json_types("few") == json_types("copied") == {"jsonb"}
    record_history(pg_service, clock, cycles=12)
    read = log_reader(pg_service)
    ViewRunner(stores["few"], read, batch_size=3).catch_up()  # pages of 3 events: rows upserted a few at a time
    ViewRunner(stores["copied"], read).catch_up()  # one page: dozens of new rows through COPY
    for store in stores.values():
        assert store.snapshot() == replayed(pg_service)
    rebuild(stores["few"], read)
    assert stores["few"].snapshot() == replayed(pg_service)
    assert json_types("few") == {"json"}


def test_select_above_a_bound_pages_by_keyset_the_same_on_every_store_and_refuses_bad_bounds_and_limits(
    service, clock, make_store
):
    store = make_store()
    record_history(service, clock, cycles=6)
    ViewRunner(store, log_reader(service)).catch_up()
    by_position = store.select(DISPATCHES, order_by=("position",))
    middle = by_position[len(by_position) // 2]["position"]
    assert (
        store.select(DISPATCHES, order_by=("position",), limit=3, above={"position": middle})
        == [r for r in by_position if r["position"] > middle][:3]
    )
    everything = store.select(DISPATCHES)  # in key order
    some_id = everything[len(everything) // 3]["dispatch_id"]
    assert store.select(DISPATCHES, above={"dispatch_id": some_id}) == [
        r for r in everything if r["dispatch_id"] > some_id
    ]
    failed = [r for r in everything if r["last_error"] is not None]
    assert failed and len(failed) < len(everything)  # the history leaves some NULL: a NULL is below any bound
    assert store.select(DISPATCHES, above={"last_error": ""}) == failed
    assert store.select(DISPATCHES, above={"position": by_position[-1]["position"]}) == []

    for above in ({"detail": 1}, {"terminal": False}, {"position": None}, {"nope": 1}):
        with pytest.raises(ValueError):
            store.select(DISPATCHES, above=above)
    for limit in (-1, "3", True):
        with pytest.raises(ValueError, match="limit must be a non-negative integer"):
            store.select(DISPATCHES, limit=limit)
    assert store.select(DISPATCHES, limit=0) == []


def test_count_answers_how_many_rows_a_filter_matches_on_every_store_without_reading_them(service, clock, make_store):
    store = make_store()
    record_history(service, clock, cycles=6)
    ViewRunner(store, log_reader(service)).catch_up()
    everything = store.select(DISPATCHES)
    assert store.count(DISPATCHES) == len(everything) > 0
    for status in {r["status"] for r in everything}:
        assert store.count(DISPATCHES, {"status": status}) == sum(r["status"] == status for r in everything)
    assert store.count(DISPATCHES, {"last_error": None}) == sum(r["last_error"] is None for r in everything)
    assert store.count(DISPATCHES, {"status": "no such status"}) == 0
    with pytest.raises(ValueError, match="cannot filter on json column"):
        store.count(DISPATCHES, {"detail": {}})


@pytest.mark.postgres
def test_a_store_on_a_pool_of_transactional_connections_reads_what_it_wrote(pg_service, postgres_env, clock):
    """Reads go out as one statement on autocommit connections; on a caller's pool without autocommit
    (one connection here) they run in a transaction of their own."""
    from psycopg_pool import ConnectionPool

    url, schema = postgres_env["MAILBOX_DATABASE_URL"], postgres_env["POSTGRES_SCHEMA"]
    end = record_history(pg_service, clock, cycles=2)
    with ConnectionPool(url, min_size=1, max_size=1, open=True) as pool:
        store = PostgresViewStore(ToyView(), pool, schema=schema, prefix="tx")
        ViewRunner(store, log_reader(pg_service)).catch_up()
        assert store.position() == end
        assert store.select(DISPATCHES) == replayed(pg_service)[DISPATCHES]
        assert store.count(DISPATCHES) == len(replayed(pg_service)[DISPATCHES])
