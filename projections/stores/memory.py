"""A view store in process memory: dicts of rows under one lock.

A batch's writes are buffered and merged under the lock with the new position, so a reader
sees a batch entirely or not at all, and a handler that raises changes nothing. A rebuild
fills a second store, and ``swap_in`` replaces this store's dicts with its dicts.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from run_mailbox.domain.model import DomainEvent
from run_mailbox.projections.schema import Key, Row, Table, checked_limit, copy_row, matches, sort_rows
from run_mailbox.projections.view import BufferedTx, RebuildBehind, View, ViewStore, fresh_part, new_position, tables_of

Tables = dict[str, dict[Key, Row]]


class MemoryViewStore:
    def __init__(self, view: View) -> None:
        self.view = view
        self._tables = tables_of(view)
        self._lock = threading.RLock()
        self._rows: Tables = self._empty()
        self._position = 0

    def _empty(self) -> Tables:
        return {name: {} for name in self._tables}

    def position(self) -> int:
        with self._lock:
            return self._position

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], through: int | None = None) -> int:
        with self._lock:
            fresh = fresh_part(batch, self._position)
            reached = new_position(fresh, self._position, through)
            tx = BufferedTx(self._tables, self._load, self._scan)
            for position, event in fresh:
                self.view.handle(position, event, tx)
            for name, rows in self._rows.items():
                upserts, deletes = tx.writes(name)
                for key in deletes:
                    rows.pop(key, None)
                for row in upserts:
                    rows[self._tables[name].key_of(row)] = row
            self._position = reached
            return len(fresh)

    def _load(self, table: Table, key: Key) -> Row | None:
        return self._rows[table.name].get(key)

    def _scan(self, table: Table, where: Row, above: Row | None = None) -> list[Row]:
        return [r for r in self._rows[table.name].values() if matches(r, where, above)]

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
            found = sort_rows(t, self._scan(t, flt, low), order_by)
        return [copy_row(r) for r in found[:limit]]

    def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        t = self._table(table)
        flt = t.normalise_where(where)
        with self._lock:
            return sum(1 for r in self._rows[t.name].values() if matches(r, flt))

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {name: self.select(name) for name in self._tables}

    def begin_rebuild(self) -> MemoryViewStore:
        return MemoryViewStore(self.view)

    def swap_in(self, scratch: ViewStore) -> None:
        if not isinstance(scratch, MemoryViewStore) or scratch is self:
            raise TypeError("swap_in takes the scratch store this store's begin_rebuild returned")
        with self._lock, scratch._lock:
            if scratch._position < self._position:
                raise RebuildBehind(self.view.name, scratch._position, self._position)
            self._rows, self._position = scratch._rows, scratch._position
            scratch._rows, scratch._position = scratch._empty(), 0

    def drop(self) -> None:
        with self._lock:
            self._rows, self._position = self._empty(), 0

    def _table(self, name: str) -> Table:
        try:
            return self._tables[name]
        except KeyError:
            raise ValueError(f"view {self.view.name!r} has no table {name!r}") from None
