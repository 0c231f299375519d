"""The Postgres recorder's own statements, composed once per recorder (quoted for its schema)."""

from __future__ import annotations

from typing import Any

from psycopg.sql import SQL

from run_mailbox.infrastructure.persistence.ready_heads import HEAD_COLUMNS
from run_mailbox.infrastructure.persistence.rows import INDEX_COLUMNS


class Statements:
    def __init__(self, recorder: Any) -> None:
        prefix = recorder.table_prefix
        q = recorder.qualified
        self.index_table = q(f"{prefix}_dispatch_index")
        self.heads_table = q(f"{prefix}_ready_heads")
        idem = q(f"{prefix}_idempotency")
        events = q(recorder.events_table_name)
        self.insert_events = SQL(
            "INSERT INTO {} AS t (originator_id, originator_version, topic, state) "
            "SELECT originator_id, originator_version, topic, state FROM unnest(%b::{}[]) "
            "RETURNING notification_id"
        ).format(events, q(recorder.stored_event_type_name))
        self.write = SQL("SELECT notification_id FROM {}(%s::integer, %b::{}[], %s::jsonb) AS notification_id").format(
            q(f"{prefix}_write"), q(recorder.stored_event_type_name)
        )
        self.find_idempotency = SQL("SELECT key, command, digest, result FROM {} WHERE key = %s").format(idem)
        self.upsert_index = SQL(
            "INSERT INTO {} (" + INDEX_COLUMNS + ") SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], "
            "%s::text[], %s::integer[], %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[]) "
            "ON CONFLICT (dispatch_id) DO UPDATE SET status = EXCLUDED.status, "
            "priority = EXCLUDED.priority, available_at = EXCLUDED.available_at, "
            "lease_until = EXCLUDED.lease_until, updated_at = EXCLUDED.updated_at"
        ).format(self.index_table)
        self.upsert_heads = SQL(
            "INSERT INTO {} (" + HEAD_COLUMNS + ") SELECT * FROM unnest(%s::text[], %s::text[], %s::integer[], "
            "%s::bigint[], %s::bigint[], %s::bigint[]) ON CONFLICT (thread_id) DO UPDATE SET "
            "dispatch_id = EXCLUDED.dispatch_id, priority = EXCLUDED.priority, created_at = EXCLUDED.created_at, "
            "available_at = EXCLUDED.available_at, next_available_at = EXCLUDED.next_available_at"
        ).format(self.heads_table)
        # The candidates and their head dispatches, and (``ready_threads_runs``) those dispatches' runs
        # through the index's key: a cold claim reads the aggregates it will most likely act on in one query.
        candidates = (
            "FROM ((SELECT thread_id, dispatch_id FROM {heads} WHERE available_at <= %(now)s "
            "ORDER BY priority, created_at, dispatch_id LIMIT %(limit)s) UNION ALL "
            "(SELECT thread_id, dispatch_id FROM {heads} WHERE next_available_at < available_at "
            "AND next_available_at <= %(now)s AND available_at > %(now)s "
            "ORDER BY priority, created_at, dispatch_id LIMIT %(limit)s)) c"
        )
        self.ready_threads = SQL("SELECT c.thread_id, c.dispatch_id, NULL AS run_id " + candidates).format(
            heads=self.heads_table
        )
        # The runs one probe of the index's key each: without statistics a join was planned as a hash
        # join over a scan of every dispatch ever indexed while the table was small (0.3 ms at 3,000).
        self.ready_threads_runs = SQL(
            "SELECT c.thread_id, c.dispatch_id, "
            "(SELECT i.run_id FROM {idx} i WHERE i.dispatch_id = c.dispatch_id) AS run_id " + candidates
        ).format(heads=self.heads_table, idx=self.index_table)
        snapshots = q(f"{prefix}_snapshots")
        self.read_aggregates = SQL(
            "WITH s AS (SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state "
            "FROM {snapshots} WHERE %(snapshots)s AND originator_id = ANY(%(ids)s) "
            "ORDER BY originator_id, originator_version DESC) "
            "SELECT originator_id, 0 AS kind, originator_version, topic, state FROM s UNION ALL "
            "SELECT e.originator_id, 1, e.originator_version, e.topic, e.state FROM {events} e "
            "LEFT JOIN s ON s.originator_id = e.originator_id "
            "WHERE e.originator_id = ANY(%(ids)s) AND e.originator_version > coalesce(s.originator_version, 0) "
            "ORDER BY 1, 2, 3"
        ).format(snapshots=snapshots, events=events)
        self.current_versions = SQL(
            "SELECT originator_id, max(originator_version) AS version FROM {} "
            "WHERE originator_id = ANY(%s) GROUP BY originator_id"
        ).format(events)
        # The statements every command runs, rendered once: psycopg caches the parsing of a query
        # string, but composes a Composed object again on every call.
        hot = ("write", "read_aggregates", "current_versions", "find_idempotency", "ready_threads")
        for name in (*hot, "ready_threads_runs"):
            setattr(self, name, getattr(self, name).as_string(None))
