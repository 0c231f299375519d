"""Rewrites the Postgres recorder's dispatch index and ready heads from given rows, in one
transaction under the events table's lock (for a log restored without its side tables)."""

from __future__ import annotations

from typing import Any

from psycopg.sql import SQL

from run_mailbox.infrastructure.persistence.ready_heads import heads_of_index
from run_mailbox.infrastructure.persistence.rows import DispatchIndexRow, sorted_index_rows


def replace_dispatch_index(recorder: Any, rows: list[DispatchIndexRow]) -> None:
    ordered = sorted_index_rows(rows)
    heads = heads_of_index(ordered)
    with recorder.datastore.get_connection() as conn, conn.transaction(), conn.cursor() as curs:
        curs.execute(recorder.begin_write, prepare=False)
        curs.execute(SQL("DELETE FROM {}").format(recorder.sql.index_table))
        curs.execute(SQL("DELETE FROM {}").format(recorder.sql.heads_table))
        if ordered:
            curs.execute(recorder.sql.upsert_index, columns((r.as_tuple() for r in ordered), 9))
        if heads:
            curs.execute(recorder.sql.upsert_heads, columns((h.as_tuple() for h in heads), 6))


def columns(rows: Any, width: int) -> list[list[Any]]:
    """Rows as ``width`` columns, for ``INSERT ... SELECT * FROM unnest(%s, %s, ...)`` (empty lists for no rows)."""
    out: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(out, row, strict=True):
            column.append(value)
    return out
