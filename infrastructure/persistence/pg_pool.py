"""The connection pool hands out the connection returned last, and lends one to a statement cheaply.

psycopg_pool keeps its idle connections in a queue: each checkout takes the one that has been idle
longest, so a single worker thread cycles through every connection the pool holds (2 by default,
up to 16 after a burst), and each command meets a backend that has sat idle through the others'
commands. On the 2 vCPU machines the benchmarks run on, a round trip to such a backend is slower:
one producer submitting over a pool of five was 30% slower than over the same pool taking the
connection it had just returned (decision 0015; docs/performance-journal.md, "2026-12-03 evening").

psycopg_pool has no setting for the order, so this turns its queue of idle connections into a stack:
a checkout takes the right end, where a returned connection is put. Only the order changes: the
pool's sizing, waiting clients, health checks and maximum lifetime work as before. (Its shrinking of
an idle pool, which also takes from that end, then closes the connection returned last rather than
the oldest; either is idle.) A psycopg_pool that no longer keeps a deque there is left as it is, and
``tests/test_pg_pool.py`` fails, so an upgrade that changes this is noticed.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import Any

import psycopg
from eventsourcing import persistence
from eventsourcing.postgres import PostgresDatastore


class _RecentFirst(deque[Any]):
    """A deque whose ``popleft`` takes the right end: the pool's checkout, made last-in first-out."""

    def popleft(self) -> Any:
        return self.pop()


def hand_out_recent_first(pool: Any) -> bool:
    """Makes ``pool`` (a ``psycopg_pool.ConnectionPool``, open or not) hand out the connection
    returned last; False if its idle connections are not kept where this expects them."""
    lock = getattr(pool, "_lock", None)
    if lock is None or type(getattr(pool, "_pool", None)) not in (deque, _RecentFirst):
        return False
    with lock:
        pool._pool = _RecentFirst(pool._pool)
    return True


# psycopg's errors as the library's ``get_connection`` turns them into its own: the store's retry
# policy and the command runner's conflict handling catch these.
_LIBRARY_ERRORS: tuple[tuple[type[psycopg.Error], type[Exception]], ...] = (
    (psycopg.InterfaceError, persistence.InterfaceError),
    (psycopg.OperationalError, persistence.OperationalError),
    (psycopg.DataError, persistence.DataError),
    (psycopg.IntegrityError, persistence.IntegrityError),
    (psycopg.InternalError, persistence.InternalError),
    (psycopg.ProgrammingError, persistence.ProgrammingError),
    (psycopg.NotSupportedError, persistence.NotSupportedError),
    (psycopg.DatabaseError, persistence.DatabaseError),
    (psycopg.Error, persistence.PersistenceError),
)


def library_error(exc: psycopg.Error) -> Exception:
    """The library's exception for a psycopg error (the same mapping as its ``get_connection``)."""
    for driver_error, library in _LIBRARY_ERRORS:
        if isinstance(exc, driver_error):
            return library(str(exc))
    raise AssertionError("unreachable: psycopg.Error is the last entry")  # pragma: no cover


class PooledConnection:
    """``with PooledConnection(datastore) as conn``: a connection of the datastore's pool for the mailbox's
    own statements, returned when the block ends, with psycopg's errors raised as the library's.

    What the library's ``get_connection`` does, for the two statements every command runs (the write,
    and the read on a cache miss), without its generator wrapping the pool's generator wrapping the
    connection's context, and without its ``pool.open`` under the pool's lock on every call: about a
    tenth of a write's client CPU (docs/performance-journal.md, 2026-12-05 evening).
    The pool is opened on first use as the library opens it; the connection is returned with
    ``putconn``, which rolls back a transaction left open and discards a broken connection, as the
    pool's own context manager does (the mailbox's connections are in autocommit)."""

    __slots__ = ("_conn", "_datastore")

    def __init__(self, datastore: PostgresDatastore) -> None:
        self._datastore = datastore

    def __enter__(self) -> Any:
        datastore = self._datastore
        try:
            if datastore.pool.closed:
                timeout = datastore.pool_open_timeout
                datastore.pool.open(timeout is not None, timeout or 30.0)
            self._conn = datastore.pool.getconn()
        except psycopg.Error as exc:
            raise library_error(exc) from exc
        return self._conn

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._datastore.pool.putconn(self._conn)
        del self._conn
        if isinstance(exc, psycopg.Error):
            raise library_error(exc) from exc
