"""A dict-backed ViewTx (and ViewStore-like ``select``) for testing view handlers alone.

Rows go through ``Table.normalise`` like in every real store, so a handler that writes a
missing, unknown or ill-typed column fails here too. Reads return copies, so a handler that
mutates a row it read without upserting it changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from run_mailbox.domain.model import DomainEvent
from run_mailbox.projections.schema import Row, Table, copy_row, matches, sort_rows


class DictTx:
    def __init__(self, view: Any) -> None:
        self.view = view
        self._tables: dict[str, Table] = {t.name: t for t in view.tables}
        self._rows: dict[str, dict[tuple[Any, ...], Row]] = {name: {} for name in self._tables}

    # ------------------------------------------------------------------ ViewTx

    def get(self, table: str, key: tuple[Any, ...]) -> Row | None:
        row = self._rows[table].get(self._tables[table].normalise_key(key))
        return None if row is None else copy_row(row)

    def upsert(self, table: str, row: dict[str, Any]) -> None:
        spec = self._tables[table]
        stored = spec.normalise(row)
        self._rows[table][spec.key_of(stored)] = stored

    def delete(self, table: str, key: tuple[Any, ...]) -> None:
        self._rows[table].pop(self._tables[table].normalise_key(key), None)

    def rows(self, table: str, where: dict[str, Any]) -> list[Row]:
        return self.select(table, where)

    # ------------------------------------------------------------------ store-like reads

    def select(
        self,
        table: str,
        where: dict[str, Any] | None = None,
        order_by: Sequence[str] = (),
        limit: int | None = None,
        above: dict[str, Any] | None = None,
    ) -> list[Row]:
        spec = self._tables[table]
        wanted, low = spec.normalise_where(where), spec.normalise_above(above)
        found = sort_rows(spec, (copy_row(r) for r in self._rows[table].values() if matches(r, wanted, low)), order_by)
        return found if limit is None else found[:limit]

    def count(self, table: str, where: dict[str, Any] | None = None) -> int:
        return len(self.select(table, where))

    def snapshot(self) -> dict[str, list[Row]]:
        return {name: self.select(name) for name in self._tables}

    # ------------------------------------------------------------------ driving

    def apply(self, pairs: Iterable[tuple[int, DomainEvent]]) -> DictTx:
        for position, event in pairs:
            self.view.handle(position, event, self)
        return self


def project(view: Any, pairs: Iterable[tuple[int, DomainEvent]]) -> DictTx:
    """A fresh dict store with every pair applied once, in order."""
    return DictTx(view).apply(pairs)
