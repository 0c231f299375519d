"""How one table's rows from a view batch reach Postgres: a few by upsert, many by COPY."""

from __future__ import annotations

from psycopg import Cursor
from psycopg.errors import UniqueViolation
from psycopg.rows import TupleRow

from run_mailbox.projections.schema import Row, Table
from run_mailbox.projections.stores.postgres_sql import Statements
from run_mailbox.projections.view import BufferedTx

SMALL = 32  # up to this many rows are upserted with executemany; more go through COPY


def write_rows(cur: Cursor[TupleRow], sql: Statements, t: Table, tx: BufferedTx) -> None:
    """Deletes and upserts the batch's rows of ``t``, inside the caller's transaction."""
    upserts, deletes = tx.writes(t.name)
    if deletes:
        cur.executemany(sql.delete, deletes)
    # By what this batch read of the committed rows: True = the key has a row, False = none, None = unread.
    by_state: dict[bool | None, list[Row]] = {True: [], False: [], None: []}
    if len(upserts) > SMALL and not tx.read_any(t.name):
        by_state[None] = upserts
    elif len(upserts) > SMALL:
        for row in upserts:
            by_state[tx.exists(t.name, t.key_of(row))].append(row)
    else:
        by_state[True] = upserts
    few = [row for rows in by_state.values() if len(rows) <= SMALL for row in rows]
    if few:
        cur.executemany(sql.upsert, [sql.encode(t, row) for row in few])
    merge = by_state[True] if len(by_state[True]) > SMALL else []
    if len(by_state[False]) > SMALL:  # a plain insert cannot collide
        _copy(cur, sql, sql.copy, t, by_state[False])
    if len(by_state[None]) > SMALL:  # most likely new (handlers read what they update): try a plain insert
        try:
            with cur.connection.transaction():
                _copy(cur, sql, sql.copy, t, by_state[None])
        except UniqueViolation:
            merge = merge + by_state[None]
    if merge:
        cur.execute(sql.stage)
        _copy(cur, sql, sql.copy_stage, t, merge)
        cur.execute(sql.merge)


def _copy(cur: Cursor[TupleRow], sql: Statements, statement: str, t: Table, rows: list[Row]) -> None:
    """Each row encoded as it is written: the server works on the rows already sent meanwhile."""
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(sql.encode(t, row))
