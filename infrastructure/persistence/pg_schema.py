"""The Postgres recorder's schema: the version the database records, and the forward migrations.

``recorded_version`` reads what the database says (one query, no locks: a service starting beside
running writers must not take the locks of ``CREATE ... IF NOT EXISTS``, which would deadlock
against the insert path's). ``migrate`` runs inside ``_create_table``'s transaction, under an
advisory lock, after the library's own DDL.
"""

from __future__ import annotations

from typing import Any

from psycopg import Cursor
from psycopg.rows import DictRow

from run_mailbox.infrastructure.persistence import migrations

_FOUND = (
    "SELECT CASE WHEN to_regclass(%(versions)s) IS NOT NULL THEN -1 "
    "WHEN to_regclass(%(index)s) IS NOT NULL THEN 1 END AS found, "
    "to_regtype(%(type)s) IS NOT NULL AS typed"
)


def schema_version(recorder: Any, curs: Cursor[DictRow], *, recorded_only: bool = False) -> int | None:
    """The version the database records; 1 for the tables of 0.1.0, which recorded none (None for
    them when ``recorded_only``); None before any table exists."""
    params = {
        "versions": recorder.table("schema_version"),
        "index": recorder.table("dispatch_index"),
        "type": recorder.table(recorder.stored_event_type_name, prefixed=False),
    }
    row = curs.execute(_FOUND, params).fetchone()
    if row is None or row["found"] is None or not row["typed"]:
        return None
    if row["found"] == 1:
        return None if recorded_only else 1
    recorded = curs.execute(f"SELECT max(version) AS version FROM {recorder.table('schema_version')}").fetchone()
    return int(recorded["version"]) if recorded and recorded["version"] is not None else None


def recorded_version(recorder: Any) -> int | None:
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:
        return schema_version(recorder, curs, recorded_only=True)


def migrate(recorder: Any, curs: Cursor[DictRow]) -> None:
    """Applies every migration after the database's version and records the latest."""
    current = schema_version(recorder, curs) or 0
    for migration in migrations.after(migrations.POSTGRES, current):
        for statement in migration.statements(recorder):
            curs.execute(statement, prepare=False)
    versions = recorder.table("schema_version")
    curs.execute(f"CREATE TABLE IF NOT EXISTS {versions} (version integer NOT NULL)", prepare=False)
    curs.execute(f"DELETE FROM {versions}", prepare=False)
    curs.execute(f"INSERT INTO {versions} (version) VALUES (%s)", [migrations.POSTGRES[-1].version], prepare=False)
