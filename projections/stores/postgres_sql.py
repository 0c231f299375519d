"""The SQL a Postgres view store runs for one table, rendered once per store."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from psycopg import Cursor
from psycopg.rows import TupleRow
from psycopg.sql import SQL, Composable, Identifier, Literal
from pydantic_core import to_json

from run_mailbox.projections.schema import Row, Table

# JSON columns are never filtered or ordered on: ``json`` keeps the text as written (checked, not
# parsed into jsonb's tree on every write: a canonical-feed rebuild wrote rows 1.5x faster). Tables
# made before were ``jsonb``; both take what these statements write.
TYPES = {"text": 'text COLLATE "C"', "int": "bigint", "bool": "boolean", "json": "json"}
_ARRAYS = {"text": "text[]", "int": "bigint[]", "bool": "boolean[]"}


def idents(names: Sequence[str]) -> Composable:
    return SQL(", ").join(map(Identifier, names))


def _element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(values: Sequence[Any]) -> str:
    """An array literal (psycopg's list adapter inspects every element; this is several times cheaper)."""
    return "{" + ",".join(map(_element, values)) + "}"


_NULLS = {False: " NULLS FIRST", True: " NULLS LAST"}


def where_clause(where: Row, above: Row | None = None) -> tuple[Composable, list[Any]]:
    """`` WHERE ...`` for equality filters (None matches NULL) and exclusive lower bounds, and its parameters."""
    conds = [SQL("{} IS NULL" if v is None else "{} = %s").format(Identifier(n)) for n, v in where.items()]
    params: list[Any] = [v for v in where.values() if v is not None]
    for name, value in (above or {}).items():
        conds.append(SQL("{} > %s").format(Identifier(name)))
        params.append(value)
    return (SQL(" WHERE ") + SQL(" AND ").join(conds) if conds else SQL("")), params


def order_clause(t: Table, order_by: Sequence[str], limit: int | None) -> Composable:
    """`` ORDER BY ... [LIMIT n]``. NULL sorts first, as in the other stores; a NOT NULL column is ordered
    without saying so, which lets the planner walk its B-tree (default order) instead of sorting every row."""
    order = [
        SQL(("{} DESC" if desc else "{} ASC") + (_NULLS[desc] if t.column(n).nullable else "")).format(Identifier(n))
        for n, desc in t.order_columns(order_by)
    ]
    return SQL(" ORDER BY {}{}").format(
        SQL(", ").join(order), SQL(" LIMIT {}").format(Literal(int(limit))) if limit is not None else SQL("")
    )


class Statements:
    """One table's statements, rendered once per store (composing SQL per call costs more than running it).

    Rows are written as lists in column order with JSON values as text (cast to json by the
    statement or parsed by COPY), dumped once per value. A few rows are upserted with executemany.
    Many go through COPY: straight into the table when the batch read the key and found no row (a
    plain insert cannot collide) or did not read it (tried in a savepoint: a key that has a row
    fails it), else into a temporary staging table merged with one ``INSERT ... ON CONFLICT``.
    """

    def __init__(self, t: Table, table: Composable, cur: Cursor[TupleRow]) -> None:
        def render(sql: Composable) -> str:
            return sql.as_string(cur)

        self.json = tuple(i for i, c in enumerate(t.columns) if c.type == "json")
        cols = idents(t.column_names)
        self.select = render(SQL("SELECT {} FROM {}").format(cols, table))
        self.by_key = self.select + render(
            SQL(" WHERE ") + SQL(" AND ").join(SQL("{} = %s").format(Identifier(n)) for n in t.key)
        )
        # One index probe per key prefix, whatever the planner guesses about a table without statistics
        # (a rebuild's tables have none): ``OFFSET 0`` keeps the lateral subquery from becoming a join
        # the planner may run as a scan of the whole table.
        self.by_prefix: dict[int, str] = {}
        for n in range(1, len(t.key) + 1):
            key = t.key[:n]
            arrays = SQL(", ").join(SQL("%s::" + _ARRAYS[t.column(k).type]) for k in key)
            probes = [Identifier(f"k{i}") for i in range(n)]
            match = SQL(" AND ").join(
                SQL("_row.{} = _keys.{}").format(Identifier(k), probe) for k, probe in zip(key, probes, strict=True)
            )
            self.by_prefix[n] = render(
                SQL(
                    "SELECT _found.* FROM unnest({}) AS _keys({}) CROSS JOIN LATERAL "
                    "(SELECT {} FROM {} AS _row WHERE {} OFFSET 0) AS _found"
                ).format(arrays, SQL(", ").join(probes), cols, table, match)
            )
        rest = [n for n in t.column_names if n not in t.key]
        action = (
            SQL("DO UPDATE SET ") + SQL(", ").join(SQL("{0} = EXCLUDED.{0}").format(Identifier(n)) for n in rest)
            if rest
            else SQL("DO NOTHING")
        )
        conflict = SQL("ON CONFLICT ({}) {}").format(idents(t.key), action)
        marks = SQL(", ").join(SQL("%s::json" if c.type == "json" else "%s") for c in t.columns)
        self.upsert = render(SQL("INSERT INTO {} ({}) VALUES ({}) {}").format(table, cols, marks, conflict))
        self.delete = render(
            SQL("DELETE FROM {} WHERE {}").format(
                table, SQL(" AND ").join(SQL("{} = %s").format(Identifier(n)) for n in t.key)
            )
        )
        self.copy = render(SQL("COPY {} ({}) FROM STDIN").format(table, cols))
        # The staging table lives in the connection's temporary schema, named after the table and its shape.
        defs = [SQL("{} " + TYPES[c.type]).format(Identifier(c.name)) for c in t.columns]
        shape = render(table) + "|" + render(SQL(", ").join(defs))
        stage = SQL("pg_temp.{}").format(Identifier("view_stage_" + hashlib.sha1(shape.encode()).hexdigest()[:24]))
        self.stage = render(
            SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
                stage, SQL(", ").join(defs)
            )
        )
        self.copy_stage = render(SQL("COPY {} ({}) FROM STDIN").format(stage, cols))
        self.merge = render(SQL("INSERT INTO {} ({}) SELECT {} FROM {} {}").format(table, cols, cols, stage, conflict))

    def encode(self, t: Table, row: Row) -> list[Any]:
        values = [row[n] for n in t.column_names]
        for i in self.json:
            if values[i] is not None:
                values[i] = to_json(values[i]).decode()
        return values
