"""A view store in Postgres: tables ``<schema>.<prefix>_<table>`` and ``<prefix>_view_tracking``.

``apply`` is one transaction: it locks the view's tracking row (``SELECT ... FOR UPDATE``, so
concurrent runners serialise), skips the positions already applied, loads the rows the view
prefetches (one query per table), runs the handlers, writes the batch's rows (many at once
through COPY) and the new position together. Columns are typed (text ``COLLATE "C"``, bigint, boolean,
jsonb) so ordering matches the other stores. A rebuild fills ``<prefix>_<table>__rebuild``;
``swap_in`` drops the live tables and renames the scratch ones (with their key and indexes)
in one transaction, so a reader sees the old view or the new one, never half of either.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from psycopg import Connection, Cursor
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow, tuple_row
from psycopg.sql import SQL, Composable, Identifier
from psycopg_pool import ConnectionPool

from run_mailbox.domain.model import DomainEvent
from run_mailbox.projections.schema import Key, Row, Table, checked_limit, sort_rows
from run_mailbox.projections.stores.postgres_sql import (
    TYPES,
    Statements,
    array_literal,
    idents,
    order_clause,
    where_clause,
)
from run_mailbox.projections.stores.postgres_write import write_rows
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
MAX_IDENTIFIER = 63
_TRACK = "INSERT INTO {} (view, position) VALUES (%s, 0) ON CONFLICT (view) DO NOTHING"
_MOVE = "UPDATE {} SET position = %s WHERE view = %s"


class PostgresViewStore:
    def __init__(
        self, view: View, pool: ConnectionPool[Any] | str, *, schema: str = "public", prefix: str = "view"
    ) -> None:
        """``pool``: a psycopg pool (e.g. the service datastore's; opened if need be) or a conninfo string."""
        self._owns_pool = isinstance(pool, str)
        if isinstance(pool, str):
            pool = ConnectionPool(pool, min_size=1, max_size=4, kwargs={"autocommit": True}, open=False)
        self._init(view, pool, schema, prefix, "")

    @classmethod
    def from_env(cls, view: View, env: Mapping[str, str], *, prefix: str = "view") -> PostgresViewStore:
        """A store with a pool of its own, from the service's ``POSTGRES_*`` settings."""
        conninfo = make_conninfo(
            dbname=env["POSTGRES_DBNAME"],
            host=env.get("POSTGRES_HOST", "127.0.0.1"),
            port=env.get("POSTGRES_PORT", "5432"),
            user=env.get("POSTGRES_USER", "postgres"),
            password=env.get("POSTGRES_PASSWORD") or None,
        )
        return cls(view, conninfo, schema=env.get("POSTGRES_SCHEMA") or "public", prefix=prefix)

    def _init(self, view: View, pool: ConnectionPool[Any], schema: str, prefix: str, suffix: str) -> None:
        self.view = view
        self._pool, self._schema, self._prefix, self._suffix = pool, schema, prefix, suffix
        self._tables = tables_of(view)
        self._tracking = self._ident(f"{prefix}_view_tracking")
        for t in self._tables.values():  # the longest names fit
            self._ident(f"{prefix}_{t.name}{SCRATCH}_pkey")
            self._ident(f"{prefix}_{t.name}{SCRATCH}__i{len(t.indexes)}")
        with self._transaction() as cur:
            self._create(cur)
            self._sql = {n: Statements(t, self._ident(self._name(n)), cur) for n, t in self._tables.items()}

    def _ident(self, name: str) -> Composable:
        if len(name.encode()) > MAX_IDENTIFIER:
            raise ValueError(f"Postgres identifier {name!r} is longer than {MAX_IDENTIFIER} bytes")
        return SQL("{}.{}").format(Identifier(self._schema), Identifier(name))

    def _name(self, table: str, suffix: str | None = None) -> str:
        return f"{self._prefix}_{table}{self._suffix if suffix is None else suffix}"

    def _slot(self, suffix: str | None = None) -> str:
        return self.view.name + (self._suffix if suffix is None else suffix)

    def close(self) -> None:
        if self._owns_pool:
            self._pool.close()

    @contextmanager
    def _cursor(self, *, transaction: bool) -> Iterator[Cursor[TupleRow]]:
        """A cursor in a transaction of its own, or (``transaction=False``) for one statement on an autocommit
        connection: one round trip, no BEGIN/COMMIT (a caller's pool without autocommit gets a transaction)."""
        if self._pool.closed:  # a pool built with open=False (as the library builds its own) opens on first use
            self._pool.open()
        with self._pool.connection() as conn:
            typed: Connection[Any] = conn
            if transaction or not typed.autocommit:
                with typed.transaction(), typed.cursor(row_factory=tuple_row) as cur:
                    yield cur
            else:
                with typed.cursor(row_factory=tuple_row) as cur:
                    yield cur

    def _statement(self) -> AbstractContextManager[Cursor[TupleRow]]:
        return self._cursor(transaction=False)

    def _transaction(self) -> AbstractContextManager[Cursor[TupleRow]]:
        return self._cursor(transaction=True)

    # ------------------------------------------------------------------ DDL

    def _create(self, cur: Cursor[TupleRow], suffix: str | None = None) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{self._schema}.{self._prefix}"])
        if not cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self._schema]).fetchone():
            cur.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(self._schema)))
        tracking = "CREATE TABLE IF NOT EXISTS {} (view text PRIMARY KEY, position bigint NOT NULL)"
        cur.execute(SQL(tracking).format(self._tracking))
        for t in self._tables.values():
            name = self._name(t.name, suffix)
            cols = [
                SQL(f"{{}} {TYPES[c.type]}{'' if c.nullable else ' NOT NULL'}").format(Identifier(c.name))
                for c in t.columns
            ]
            key = SQL("CONSTRAINT {} PRIMARY KEY ({})").format(Identifier(f"{name}_pkey"), idents(t.key))
            cur.execute(
                SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(self._ident(name), SQL(", ").join([*cols, key]))
            )
            for i, index in enumerate(t.indexes):
                sql = SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})")
                cur.execute(sql.format(Identifier(f"{name}__i{i}"), self._ident(name), idents(index)))
        cur.execute(SQL(_TRACK).format(self._tracking), [self._slot(suffix)])

    def _drop(self, cur: Cursor[TupleRow], suffix: str | None = None, *, untrack: bool = True) -> None:
        for t in self._tables.values():
            cur.execute(SQL("DROP TABLE IF EXISTS {}").format(self._ident(self._name(t.name, suffix))))
        if untrack:
            cur.execute(SQL("DELETE FROM {} WHERE view = %s").format(self._tracking), [self._slot(suffix)])

    def drop(self) -> None:
        with self._transaction() as cur:
            self._drop(cur)

    # ------------------------------------------------------------------ reads

    def _tracked(self, cur: Cursor[TupleRow], suffix: str | None = None, *, lock: bool = False) -> int | None:
        sql = SQL("SELECT position FROM {} WHERE view = %s" + (" FOR UPDATE" if lock else "")).format(self._tracking)
        row = cur.execute(sql, [self._slot(suffix)]).fetchone()
        return int(row[0]) if row else None

    def position(self) -> int:
        with self._statement() as cur:
            return self._tracked(cur) or 0

    def _query(
        self,
        cur: Cursor[TupleRow],
        t: Table,
        where: Row,
        order_by: Sequence[str] = (),
        limit: int | None = None,
        above: Row | None = None,
    ) -> list[Row]:
        condition, params = where_clause(where, above)
        sql = SQL(self._sql[t.name].select) + condition + order_clause(t, order_by, limit)
        return self._rows(t, cur.execute(sql, params))

    @staticmethod
    def _rows(t: Table, found: Cursor[TupleRow]) -> list[Row]:
        names = t.column_names
        return [dict(zip(names, r, strict=True)) for r in found]

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
        with self._statement() as cur:
            return self._query(cur, t, flt, order_by, limit, low)

    def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        t = self._table(table)
        flt = t.normalise_where(where)
        condition, params = where_clause(flt)
        sql = SQL("SELECT count(*) FROM {}{}").format(self._ident(self._name(t.name)), condition)
        with self._statement() as cur:
            found = cur.execute(sql, params).fetchone()
        return int(found[0]) if found else 0

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self._transaction() as cur:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return {name: sort_rows(t, self._query(cur, t, {})) for name, t in self._tables.items()}

    # ------------------------------------------------------------------ writes

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], through: int | None = None) -> int:
        with self._transaction() as cur:
            if (tracked := self._tracked(cur, lock=True)) is None:  # the row was dropped: track from zero again
                cur.execute(SQL(_TRACK).format(self._tracking), [self._slot()])
                tracked = self._tracked(cur, lock=True) or 0
            fresh = fresh_part(batch, tracked)
            reached = new_position(fresh, tracked, through)
            if reached == tracked:
                return 0
            cur.execute("SET LOCAL jit = off")  # short queries with guessed (often large) costs: never worth it
            tx = BufferedTx(self._tables, lambda t, k: self._load(cur, t, k), lambda t, w: self._query(cur, t, w))
            prefetch(self.view, fresh, tx, lambda t, n, keys: self._load_many(cur, t, n, keys))
            for position, event in fresh:
                self.view.handle(position, event, tx)
            for t in self._tables.values():
                write_rows(cur, self._sql[t.name], t, tx)
            cur.execute(SQL(_MOVE).format(self._tracking), [reached, self._slot()])
            return len(fresh)

    def _load(self, cur: Cursor[TupleRow], t: Table, key: Key) -> Row | None:
        rows = self._rows(t, cur.execute(self._sql[t.name].by_key, list(key)))
        return rows[0] if rows else None

    def _load_many(self, cur: Cursor[TupleRow], t: Table, length: int, prefixes: list[Key]) -> list[Row]:
        """Every row whose key starts with one of ``prefixes`` (each ``length`` values long), in one query."""
        if not prefixes:
            return []
        columns = [array_literal(values) for values in zip(*prefixes, strict=True)]
        return self._rows(t, cur.execute(self._sql[t.name].by_prefix[length], columns))

    # ------------------------------------------------------------------ rebuild

    def begin_rebuild(self) -> PostgresViewStore:
        if self._suffix:
            raise ValueError("begin_rebuild is called on the live store")
        with self._transaction() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{self._schema}.{self._prefix}"])
            self._drop(cur, SCRATCH)
            self._create(cur, SCRATCH)
        scratch = object.__new__(PostgresViewStore)
        scratch._owns_pool = False
        scratch._init(self.view, self._pool, self._schema, self._prefix, SCRATCH)
        return scratch

    def swap_in(self, scratch: ViewStore) -> None:
        if not (isinstance(scratch, PostgresViewStore) and scratch._suffix == SCRATCH and scratch._pool is self._pool):
            raise TypeError("swap_in takes the scratch store this store's begin_rebuild returned")
        with self._transaction() as cur:
            live = self._tracked(cur, lock=True) or 0  # a runner waiting on this row then sees the swapped-in position
            built = self._tracked(cur, SCRATCH, lock=True) or 0
            if built < live:
                raise RebuildBehind(self.view.name, built, live)
            self._drop(cur, untrack=False)
            for t in self._tables.values():
                old, new = self._name(t.name, SCRATCH), self._name(t.name)
                cur.execute(SQL("ALTER TABLE {} RENAME TO {}").format(self._ident(old), Identifier(new)))
                cur.execute(
                    SQL("ALTER TABLE {} RENAME CONSTRAINT {} TO {}").format(
                        self._ident(new), Identifier(f"{old}_pkey"), Identifier(f"{new}_pkey")
                    )
                )
                for i in range(len(t.indexes)):
                    cur.execute(
                        SQL("ALTER INDEX {} RENAME TO {}").format(
                            self._ident(f"{old}__i{i}"), Identifier(f"{new}__i{i}")
                        )
                    )
            cur.execute(SQL("DELETE FROM {} WHERE view = %s").format(self._tracking), [self._slot(SCRATCH)])
            cur.execute(SQL(_TRACK).format(self._tracking), [self._slot()])
            cur.execute(SQL(_MOVE).format(self._tracking), [built, self._slot()])

    def _table(self, name: str) -> Table:
        try:
            return self._tables[name]
        except KeyError:
            raise ValueError(f"view {self.view.name!r} has no table {name!r}") from None
