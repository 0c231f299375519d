"""Small assertions shared by the service tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from run_mailbox import Submit
from run_mailbox.domain import DispatchRecord


@contextmanager
def store_unchanged(service, dispatch_id: str) -> Iterator[None]:
    """The block's refused command writes nothing: same log head, same record."""
    head, record = service.recorder.max_notification_id(), service.get_dispatch(dispatch_id)
    yield
    assert service.recorder.max_notification_id() == head
    assert service.get_dispatch(dispatch_id) == record


def assert_claim_cleared(record: DispatchRecord) -> None:
    assert (record.claim_token, record.claimed_by, record.lease_until) == (None, None, None)


def count_reads(service: Any) -> list[int]:
    """Wraps the recorder's many-aggregate read (Postgres only): the number of ids each call asked for."""
    calls: list[int] = []
    read = service.recorder.read_aggregates

    def counting(aggregate_ids: list[Any], **kwargs: Any) -> Any:
        calls.append(len(aggregate_ids))
        return read(aggregate_ids, **kwargs)

    service.recorder.read_aggregates = counting
    return calls


def hold_events_lock(postgres_url: str, schema: str) -> psycopg.Connection[Any]:
    """A session holding the events table's EXCLUSIVE lock until it is closed (not autocommit)."""
    holder = psycopg.connect(postgres_url)
    holder.execute(sql.SQL("LOCK TABLE {}.mailboxservice_events IN EXCLUSIVE MODE").format(sql.Identifier(schema)))
    return holder


def submit_threads(service: Any, first: int, count: int) -> None:
    """One run on each of the threads ``t<first>`` .. ``t<first + count - 1>``, a thousand per ``submit_many``."""
    for start in range(first, first + count, 1000):
        service.submit_many([Submit(f"t{n}", f"r{n}") for n in range(start, min(start + 1000, first + count))])


def buffers_read(service: Any, statement: str, params: Any) -> int:
    """Shared buffers one run of ``statement`` touched on the service's Postgres (EXPLAIN ANALYZE)."""
    with service.recorder.datastore.get_connection() as conn:
        (row,) = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, params).fetchall()
    (plan,) = next(iter(row.values()))
    return int(plan["Plan"]["Shared Hit Blocks"]) + int(plan["Plan"]["Shared Read Blocks"])
