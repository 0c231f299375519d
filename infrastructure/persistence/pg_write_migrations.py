"""The Postgres write function (``<prefix>_write``) as migrations 4 to 7 made it: a whole write in
one statement, then each change to it. Released migrations never change: a later one redefines the
function whole (``CREATE OR REPLACE``)."""

from __future__ import annotations

from typing import Any


def write_v4(n: Any) -> list[str]:
    """A whole write in one statement (one round trip, its own transaction): take the events table's
    lock (waiting at most ``lock_ms``), announce the insert, check the versions of the aggregates the
    command only read, write the side rows, insert the events and return their notification ids.
    The side rows come as one JSON document (``side``), which the server unpacks faster than the
    driver dumps a score of typed arrays."""
    return _write_function(n, "thread_id IN (SELECT jsonb_array_elements_text(side->'gone'))")


_GONE_BY_KEY = "thread_id = ANY(ARRAY(SELECT jsonb_array_elements_text(side->'gone')))"
"""Busy threads' ready heads, found through the heads' primary key (migration 5)."""


def write_v5(n: Any) -> list[str]:
    """The write deletes the ready heads of threads that became busy through the heads' primary key:
    ``IN (SELECT jsonb_array_elements_text(...))`` was planned as a hash join over a sequential scan of
    every head (4.5 ms with 20,000 idle threads, on every claim), ``= ANY(ARRAY(...))`` is an index scan."""
    return _write_function(n, _GONE_BY_KEY)


def write_v6(n: Any) -> list[str]:
    """Before it takes the table's lock, the write looks up the aggregates the command presumed new
    without reading them (``side->'new'``: a submit's mailbox on a thread the service had not seen)
    and refuses the write as a conflict if any has events: the wrong guess costs an index probe, not
    a failed insert under the lock that every other writer waits for. One probe per id: a single
    ``= ANY(...)`` over them all was planned as a sequential scan of the events (0.5-0.7 ms a submit
    in a benchmark of a few thousand events)."""
    presumed = f"""
            FOR presumed IN SELECT (jsonb_array_elements_text(side->'new'))::uuid LOOP
                IF EXISTS (SELECT 1 FROM {n.table("events")} WHERE originator_id = presumed) THEN
                    RAISE EXCEPTION 'aggregate % was presumed new but has events', presumed
                        USING ERRCODE = 'unique_violation';
                END IF;
            END LOOP;"""
    return _write_function(n, _GONE_BY_KEY, declare="\n        DECLARE presumed uuid;", first=presumed)


def write_v7(n: Any) -> list[str]:
    """The write's checks without a query of their own: the presumed-new probes and the read-version
    checks walk their JSON arrays by position (plpgsql evaluates ``side->'new'->>i`` itself, where a
    ``FOR ... IN SELECT`` opened a portal even for an empty array: about 15 us of every write), the
    read versions are checked in the write function instead of a second one, and the lock timeout is
    set by an assignment rather than a ``PERFORM`` (a whole query). The checks and their errors are
    those of migrations 2 and 6."""
    events = n.table("events")
    presumed = f"""
            FOR i IN 0 .. jsonb_array_length(side->'new') - 1 LOOP
                aggregate := (side->'new'->>i)::uuid;
                IF EXISTS (SELECT 1 FROM {events} WHERE originator_id = aggregate) THEN
                    RAISE EXCEPTION 'aggregate % was presumed new but has events', aggregate
                        USING ERRCODE = 'unique_violation';
                END IF;
            END LOOP;"""
    read = f"""
            FOR i IN 0 .. jsonb_array_length(side->'read') - 1 LOOP
                aggregate := (side->'read'->i->>0)::uuid;
                IF (side->'read'->i->>1)::integer <> coalesce(
                    (SELECT max(e.originator_version) FROM {events} e WHERE e.originator_id = aggregate), 0) THEN
                    RAISE EXCEPTION 'stale read of aggregate %: it changed since it was read', aggregate
                        USING ERRCODE = 'unique_violation';
                END IF;
            END LOOP;"""
    return _write_function(
        n,
        _GONE_BY_KEY,
        declare="\n        DECLARE aggregate uuid; setting text;",
        first=presumed,
        lock="setting := set_config('lock_timeout', lock_ms || 'ms', true);",
        read=read,
    )


_READ_V2 = """
            IF jsonb_array_length(side->'read') > 0 THEN
                PERFORM {check}(
                    ARRAY(SELECT (r->>0)::uuid FROM jsonb_array_elements(side->'read') AS r),
                    ARRAY(SELECT (r->>1)::integer FROM jsonb_array_elements(side->'read') AS r));
            END IF;"""


def _write_function(
    n: Any,
    gone: str,
    *,
    declare: str = "",
    first: str = "",
    lock: str = "PERFORM set_config('lock_timeout', lock_ms || 'ms', true);",
    read: str | None = None,
) -> list[str]:
    events, idx, heads = n.table("events"), n.table("dispatch_index"), n.table("ready_heads")
    if read is None:
        read = _READ_V2.format(check=n.table("assert_read_versions"))
    return [
        f"""CREATE OR REPLACE FUNCTION {n.table("write")}(
            lock_ms integer, events {n.table(n.stored_event_type_name, prefixed=False)}[], side jsonb)
        RETURNS SETOF bigint LANGUAGE plpgsql AS $${declare}
        BEGIN{first}
            {lock}
            LOCK TABLE {events} IN EXCLUSIVE MODE;
            NOTIFY {n.channel};{read}
            IF side->'idem' IS NOT NULL AND jsonb_typeof(side->'idem') = 'object' THEN
                INSERT INTO {n.table("idempotency")} (key, command, digest, result)
                SELECT * FROM jsonb_to_record(side->'idem') AS x(key text, command text, digest text, result text);
            END IF;
            IF jsonb_array_length(side->'index') > 0 THEN
                INSERT INTO {idx} (dispatch_id, thread_id, run_id, status, priority, created_at, available_at,
                    lease_until, updated_at)
                SELECT * FROM jsonb_to_recordset(side->'index') AS x(dispatch_id text, thread_id text, run_id text,
                    status text, priority integer, created_at bigint, available_at bigint, lease_until bigint,
                    updated_at bigint)
                ON CONFLICT (dispatch_id) DO UPDATE SET status = EXCLUDED.status, priority = EXCLUDED.priority,
                    available_at = EXCLUDED.available_at, lease_until = EXCLUDED.lease_until,
                    updated_at = EXCLUDED.updated_at;
            END IF;
            IF jsonb_array_length(side->'gone') > 0 THEN
                DELETE FROM {heads} WHERE {gone};
            END IF;
            IF jsonb_array_length(side->'heads') > 0 THEN
                INSERT INTO {heads} (thread_id, dispatch_id, priority, created_at, available_at, next_available_at)
                SELECT * FROM jsonb_to_recordset(side->'heads') AS x(thread_id text, dispatch_id text,
                    priority integer, created_at bigint, available_at bigint, next_available_at bigint)
                ON CONFLICT (thread_id) DO UPDATE SET dispatch_id = EXCLUDED.dispatch_id,
                    priority = EXCLUDED.priority, created_at = EXCLUDED.created_at,
                    available_at = EXCLUDED.available_at, next_available_at = EXCLUDED.next_available_at;
            END IF;
            RETURN QUERY INSERT INTO {events} AS t (originator_id, originator_version, topic, state)
                SELECT e.originator_id, e.originator_version, e.topic, e.state FROM unnest(events) AS e
                RETURNING t.notification_id;
        END $$"""
    ]
