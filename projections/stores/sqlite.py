"""A view store in a SQLite file: tables ``<prefix>_<table>`` and ``<prefix>_view_tracking``.

``apply`` runs in one ``BEGIN IMMEDIATE`` transaction: it reads the tracked position (the
write lock is already held, so concurrent runners in other processes serialise), applies the
events after it and stores the new position with the rows. A rebuild fills
``<prefix>_<table>__rebuild`` on the same connection; ``swap_in`` drops the live tables and
renames the scratch ones in one transaction, so a reader sees the old view or the new one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from run_mailbox.domain.model import DomainEvent
from run_mailbox.projections.schema import Column, Key, Row, Table, checked_limit, sort_rows
from run_mailbox.projections.view import (
    BufferedTx,
    RebuildBehind,
    View,
    ViewStore,
    fresh_part,
    new_position,
    prefetch,
    tables_of,
)

SCRATCH = "__rebuild"
MAX_PARAMS = 900  # bound parameters per statement (older SQLite builds allow 999)
_TYPES = {"text": "TEXT", "int": "INTEGER", "bool": "INTEGER", "json": "TEXT"}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _where(t: Table, where: Row, above: Row | None = None) -> tuple[str, list[Any]]:
    """`` WHERE ...`` for equality filters (None matches NULL) and exclusive lower bounds, and its parameters."""
    conds = [f"{_q(n)} IS NULL" if v is None else f"{_q(n)} = ?" for n, v in where.items()]
    params: list[Any] = [_encode(t.column(n), v) for n, v in where.items() if v is not None]
    conds += [f"{_q(n)} > ?" for n in (above or {})]
    params += [_encode(t.column(n), v) for n, v in (above or {}).items()]
    return (" WHERE " + " AND ".join(conds) if conds else ""), params


def _encode(column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.type == "json":
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return int(value) if column.type == "bool" else value


def _decode(table: Table, values: Sequence[Any]) -> Row:
    row: Row = {}
    for column, stored in zip(table.columns, values, strict=True):
        if stored is None or column.type in ("text", "int"):
            row[column.name] = stored
        else:
            row[column.name] = json.loads(stored) if column.type == "json" else bool(stored)
    return row


class SQLiteViewStore:
    def __init__(self, view: View, path: str | Path, *, prefix: str = "view", timeout: float = 30.0) -> None:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=timeout)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._init(view, conn, threading.RLock(), prefix, "")

    def _init(self, view: View, conn: sqlite3.Connection, lock: threading.RLock, prefix: str, suffix: str) -> None:
        self.view = view
        self._conn, self._lock, self._prefix, self._suffix = conn, lock, prefix, suffix
        self._tables = tables_of(view)
        self._tracking = _q(f"{prefix}_view_tracking")
        self._ensure()

    def _name(self, table: str, suffix: str | None = None) -> str:
        return f"{self._prefix}_{table}{self._suffix if suffix is None else suffix}"

    def _slot(self, suffix: str | None = None) -> str:
        return self.view.name + (self._suffix if suffix is None else suffix)

    def close(self) -> None:
        if not self._suffix:
            self._conn.close()

    @contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute(f"BEGIN {mode}")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    # ------------------------------------------------------------------ DDL

    def _create(self, c: sqlite3.Connection, suffix: str | None = None) -> None:
        c.execute(f"CREATE TABLE IF NOT EXISTS {self._tracking} (view TEXT PRIMARY KEY, position INTEGER NOT NULL)")
        for t in self._tables.values():
            name = self._name(t.name, suffix)
            cols = [f"{_q(col.name)} {_TYPES[col.type]}{'' if col.nullable else ' NOT NULL'}" for col in t.columns]
            key = ", ".join(map(_q, t.key))
            c.execute(f"CREATE TABLE IF NOT EXISTS {_q(name)} ({', '.join(cols)}, PRIMARY KEY ({key})) WITHOUT ROWID")
            for i, index in enumerate(t.indexes):
                c.execute(
                    f"CREATE INDEX IF NOT EXISTS {_q(f'{name}__i{i}')} ON {_q(name)} ({', '.join(map(_q, index))})"
                )
        c.execute(f"INSERT OR IGNORE INTO {self._tracking} (view, position) VALUES (?, 0)", (self._slot(suffix),))

    def _ensure(self) -> None:
        with self._tx() as c:
            self._create(c)

    def _drop(self, c: sqlite3.Connection, suffix: str | None = None) -> None:
        for t in self._tables.values():
            c.execute(f"DROP TABLE IF EXISTS {_q(self._name(t.name, suffix))}")
        if c.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (self._tracking.strip('"'),)).fetchone():
            c.execute(f"DELETE FROM {self._tracking} WHERE view = ?", (self._slot(suffix),))

    def drop(self) -> None:
        with self._tx() as c:
            self._drop(c)

    # ------------------------------------------------------------------ reads

    def _tracked(self, c: sqlite3.Connection, suffix: str | None = None) -> int:
        row = c.execute(f"SELECT position FROM {self._tracking} WHERE view = ?", (self._slot(suffix),)).fetchone()
        return int(row[0]) if row else 0

    def position(self) -> int:
        with self._lock:
            return self._tracked(self._conn)

    def _query(
        self,
        c: sqlite3.Connection,
        t: Table,
        where: Row,
        order_by: Sequence[str] = (),
        limit: int | None = None,
        above: Row | None = None,
    ) -> list[Row]:
        cols = ", ".join(_q(n) for n in t.column_names)
        condition, params = _where(t, where, above)
        sql = f"SELECT {cols} FROM {_q(self._name(t.name))}{condition}"
        sql += " ORDER BY " + ", ".join(f"{_q(n)} {'DESC' if d else 'ASC'}" for n, d in t.order_columns(order_by))
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_decode(t, r) for r in c.execute(sql, params)]

    def select(
        self,
        table: str,
        where: dict[str, Any] | None = None,
        order_by: Sequence[str] = (),
        limit: int | None = None,
        above: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        t = self._table(table)
        flt, low, limit = t.normalise_where(where), t.normalise_above(above), checked_limit(limit)
        with self._lock:
            return self._query(self._conn, t, flt, order_by, limit, low)

    def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        t = self._table(table)
        condition, params = _where(t, t.normalise_where(where))
        sql = f"SELECT count(*) FROM {_q(self._name(t.name))}{condition}"
        with self._lock:
            return int(self._conn.execute(sql, params).fetchone()[0])

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self._tx("DEFERRED") as c:
            return {name: sort_rows(t, self._query(c, t, {})) for name, t in self._tables.items()}

    # ------------------------------------------------------------------ writes

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], through: int | None = None) -> int:
        with self._tx() as c:
            tracked = self._tracked(c)
            fresh = fresh_part(batch, tracked)
            reached = new_position(fresh, tracked, through)
            if reached == tracked:
                return 0
            tx = BufferedTx(self._tables, lambda t, k: self._load(c, t, k), lambda t, w: self._query(c, t, w))
            prefetch(self.view, fresh, tx, lambda t, n, keys: self._load_many(c, t, n, keys))
            for position, event in fresh:
                self.view.handle(position, event, tx)
            for t in self._tables.values():
                self._write(c, t, *tx.writes(t.name))
            sql = f"INSERT OR REPLACE INTO {self._tracking} (view, position) VALUES (?, ?)"
            c.execute(sql, (self._slot(), reached))
            return len(fresh)

    def _load(self, c: sqlite3.Connection, t: Table, key: Key) -> Row | None:
        rows = self._query(c, t, dict(zip(t.key, key, strict=True)))
        return rows[0] if rows else None

    def _load_many(self, c: sqlite3.Connection, t: Table, length: int, prefixes: list[Key]) -> list[Row]:
        """Every row whose key starts with one of ``prefixes`` (each ``length`` values long)."""
        cols = ", ".join(f"t.{_q(n)}" for n in t.column_names)
        # A join on the key (SQLite scans the whole table for a row-value ``IN``; it searches the key for a join).
        on = " AND ".join(f"t.{_q(n)} = v.column{i}" for i, n in enumerate(t.key[:length], start=1))
        columns = [t.column(n) for n in t.key[:length]]
        step = max(1, MAX_PARAMS // length)
        found: list[Row] = []
        for start in range(0, len(prefixes), step):
            chunk = prefixes[start : start + step]
            marks = ", ".join(["(" + ", ".join("?" * length) + ")"] * len(chunk))
            params = [_encode(col, v) for prefix in chunk for col, v in zip(columns, prefix, strict=True)]
            sql = f"SELECT {cols} FROM (VALUES {marks}) AS v JOIN {_q(self._name(t.name))} AS t ON {on}"
            found += [_decode(t, r) for r in c.execute(sql, params)]
        return found

    def _write(self, c: sqlite3.Connection, t: Table, upserts: list[Row], deletes: list[Key]) -> None:
        name = _q(self._name(t.name))
        if deletes:
            where = " AND ".join(f"{_q(n)} = ?" for n in t.key)
            c.executemany(f"DELETE FROM {name} WHERE {where}", deletes)
        if upserts:
            cols = ", ".join(_q(n) for n in t.column_names)
            marks = ", ".join("?" for _ in t.columns)
            rest = [n for n in t.column_names if n not in t.key]
            action = "DO UPDATE SET " + ", ".join(f"{_q(n)} = excluded.{_q(n)}" for n in rest) if rest else "DO NOTHING"
            sql = f"INSERT INTO {name} ({cols}) VALUES ({marks}) ON CONFLICT ({', '.join(map(_q, t.key))}) {action}"
            c.executemany(sql, [[_encode(col, row[col.name]) for col in t.columns] for row in upserts])

    # ------------------------------------------------------------------ rebuild

    def begin_rebuild(self) -> SQLiteViewStore:
        if self._suffix:
            raise ValueError("begin_rebuild is called on the live store")
        with self._tx() as c:
            self._drop(c, SCRATCH)
            self._create(c, SCRATCH)
        scratch = object.__new__(SQLiteViewStore)
        scratch._init(self.view, self._conn, self._lock, self._prefix, SCRATCH)
        return scratch

    def swap_in(self, scratch: ViewStore) -> None:
        if not (isinstance(scratch, SQLiteViewStore) and scratch._conn is self._conn and scratch._suffix == SCRATCH):
            raise TypeError("swap_in takes the scratch store this store's begin_rebuild returned")
        with self._tx() as c:
            built, live = self._tracked(c, SCRATCH), self._tracked(c)
            if built < live:
                raise RebuildBehind(self.view.name, built, live)
            for t in self._tables.values():
                c.execute(f"DROP TABLE IF EXISTS {_q(self._name(t.name))}")
                old, new = self._name(t.name, SCRATCH), self._name(t.name)
                c.execute(f"ALTER TABLE {_q(old)} RENAME TO {_q(new)}")
                for i, index in enumerate(t.indexes):  # SQLite cannot rename an index: build it under its live name
                    c.execute(f"DROP INDEX IF EXISTS {_q(f'{old}__i{i}')}")
                    c.execute(f"CREATE INDEX {_q(f'{new}__i{i}')} ON {_q(new)} ({', '.join(map(_q, index))})")
            c.execute(f"DELETE FROM {self._tracking} WHERE view = ?", (self._slot(SCRATCH),))
            c.execute(f"INSERT OR REPLACE INTO {self._tracking} (view, position) VALUES (?, ?)", (self._slot(), built))

    def _table(self, name: str) -> Table:
        try:
            return self._tables[name]
        except KeyError:
            raise ValueError(f"view {self.view.name!r} has no table {name!r}") from None
