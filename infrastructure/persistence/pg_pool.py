"""The connection pool hands out the connection returned last.

psycopg_pool keeps its idle connections in a queue: each checkout takes the one that has been idle
longest, so a single worker thread cycles through every connection the pool holds (2 by default,
up to 16 after a burst), and each command meets a backend that has sat idle through the others'
commands. On the 2 vCPU machines the benchmarks run on, a round trip to such a backend is slower:
one producer submitting over a pool of five was 30% slower than over the same pool taking the
connection it had just returned (decision 0015; docs/performance.md, "2026-12-03 evening").

psycopg_pool has no setting for the order, so this turns its queue of idle connections into a stack:
a checkout takes the right end, where a returned connection is put. Only the order changes: the
pool's sizing, waiting clients, health checks and maximum lifetime work as before. (Its shrinking of
an idle pool, which also takes from that end, then closes the connection returned last rather than
the oldest; either is idle.) A psycopg_pool that no longer keeps a deque there is left as it is, and
``tests/test_pg_pool.py`` fails, so an upgrade that changes this is noticed.
"""

from __future__ import annotations

from collections import deque
from typing import Any


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
