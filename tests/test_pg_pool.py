"""The service's connection pool hands out the connection returned last (infrastructure/persistence/pg_pool),
on real Postgres: one thread's commands keep meeting the same backend, and the pool still lends a
second connection to a second borrower, waits, sizes and recovers as psycopg_pool does. The mailbox's
own statements borrow through ``PooledConnection``, which raises psycopg's errors as the library's."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from eventsourcing import persistence
from eventsourcing.postgres import PostgresDatastore
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from run_mailbox.infrastructure.persistence.pg_pool import PooledConnection, hand_out_recent_first
from run_mailbox.infrastructure.service import MailboxService

pytestmark = pytest.mark.postgres


@pytest.fixture
def service(postgres_env: dict[str, str]) -> Iterator[MailboxService]:
    svc = MailboxService(env={**postgres_env, "POSTGRES_POOL_SIZE": "4", "POSTGRES_MAX_OVERFLOW": "2"})
    try:
        yield svc
    finally:
        svc.close()


def backend_pid(pool: ConnectionPool) -> int:
    with pool.connection() as conn:
        row = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
        assert row is not None
        return int(row["pid"] if isinstance(row, dict) else row[0])


def opened(pool: ConnectionPool, size: int) -> ConnectionPool:
    pool.open(wait=True, timeout=10)
    assert pool.get_stats()["pool_available"] >= size
    return pool


def test_one_threads_commands_all_meet_the_backend_it_used_last(service: MailboxService) -> None:
    pool = opened(service.recorder.datastore.pool, 4)
    pids = []
    for i in range(8):
        service.submit(f"thread-{i}", f"run-{i}")
        pids.append(backend_pid(pool))
    assert len(set(pids)) == 1, pids


def test_a_plain_pool_of_the_same_size_cycles_through_its_connections(postgres_env: dict[str, str]) -> None:
    """What the change is against: psycopg_pool on its own takes the connection idle longest."""
    svc = MailboxService(env={**postgres_env, "POSTGRES_POOL_SIZE": "4"})
    try:
        kwargs = svc.recorder.datastore.pool.kwargs
    finally:
        svc.close()
    with ConnectionPool(kwargs=kwargs, min_size=4, max_size=4, open=False) as plain:
        opened(plain, 4)
        assert len({backend_pid(plain) for _ in range(8)}) == 4
        assert hand_out_recent_first(plain)
        assert len({backend_pid(plain) for _ in range(8)}) == 1


def test_a_second_borrower_gets_another_connection_and_the_last_returned_comes_back_first(
    service: MailboxService,
) -> None:
    pool = opened(service.recorder.datastore.pool, 4)
    with pool.connection() as first, pool.connection() as second:
        assert first is not second
    # ``second`` was returned first, then ``first``: the next checkout is ``first`` again.
    with pool.connection() as again:
        assert again is first


def test_borrowers_beyond_the_pool_wait_grow_it_and_all_finish(service: MailboxService) -> None:
    pool = opened(service.recorder.datastore.pool, 4)
    inside = threading.Barrier(6, timeout=10)
    errors: list[BaseException] = []

    def borrow() -> None:
        try:
            with pool.connection(timeout=10) as conn:
                conn.execute("SELECT 1")
                inside.wait()  # six at once: the pool grows by its overflow of two
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=borrow) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors
    assert pool.get_stats()["pool_size"] >= 6
    assert len({backend_pid(pool) for _ in range(5)}) == 1


def test_a_broken_connection_is_replaced_and_the_order_kept(service: MailboxService) -> None:
    pool = opened(service.recorder.datastore.pool, 4)
    with pool.connection() as doomed_conn, pool.connection() as admin:
        doomed = int(doomed_conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])
        admin.execute("SELECT pg_terminate_backend(%s)", [doomed])
    # ``doomed_conn`` was returned last: the next checkout meets it dead.
    service.submit("thread-after", "run-after")  # the policy's retry meets the dead connection and checks the pool
    pids = {backend_pid(pool) for _ in range(5)}
    assert len(pids) == 1 and doomed not in pids


def test_a_pool_kept_elsewhere_is_left_alone() -> None:
    class Elsewhere:
        _lock = threading.Lock()
        _pool: list[object] = []

    assert not hand_out_recent_first(Elsewhere())
    assert Elsewhere._pool == []


def test_a_statement_borrows_the_connection_returned_last_and_gives_it_back_after_an_error(
    service: MailboxService,
) -> None:
    datastore = service.recorder.datastore
    pool = opened(datastore.pool, 4)
    with pool.connection() as last:
        pass
    available = pool.get_stats()["pool_available"]
    with pytest.raises(persistence.DataError, match="division by zero"), PooledConnection(datastore) as conn:
        assert conn is last
        conn.execute("SELECT 1/0")
    assert pool.get_stats()["pool_available"] == available
    with PooledConnection(datastore) as again:
        assert again is last
        assert again.execute("SELECT 2 AS two").fetchone()["two"] == 2


@pytest.mark.parametrize(
    ("sqlstate", "library_error"),
    [
        ("unique_violation", persistence.IntegrityError),  # a stale read or a taken key: the runner retries
        ("lock_not_available", persistence.OperationalError),  # a lock timeout: the policy's StoreTimeout
        ("undefined_function", persistence.ProgrammingError),
        ("internal_error", persistence.InternalError),
    ],
)
def test_psycopgs_errors_come_back_as_the_librarys_own_with_the_servers_message(
    service: MailboxService, sqlstate: str, library_error: type[Exception]
) -> None:
    with (
        pytest.raises(library_error, match=f"raised {sqlstate}") as caught,
        PooledConnection(service.recorder.datastore) as conn,
    ):
        conn.execute(f"DO $$ BEGIN RAISE {sqlstate} USING MESSAGE = 'raised {sqlstate}'; END $$")
    assert type(caught.value) is library_error
    assert caught.value.__cause__ is not None and caught.value.__cause__.sqlstate  # the driver's error, kept


def test_a_pool_not_yet_open_is_opened_by_its_first_statement(postgres_url: str) -> None:
    settings = conninfo_to_dict(postgres_url)
    datastore = PostgresDatastore(
        dbname=str(settings["dbname"]),
        host=str(settings.get("host", "127.0.0.1")),
        port=str(settings.get("port", 5432)),
        user=str(settings.get("user", "postgres")),
        password=str(settings.get("password", "")),
    )
    try:
        assert datastore.pool.closed
        with PooledConnection(datastore) as conn:
            assert conn.execute("SELECT 3 AS three").fetchone()["three"] == 3
        assert not datastore.pool.closed
    finally:
        datastore.close()
