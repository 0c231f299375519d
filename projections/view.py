"""The contract between views and stores, and the buffered transaction every store hands to handlers.

A ``View`` is pure: ``handle(position, event, tx)`` reads and writes rows only through ``tx``.
A ``ViewStore`` applies a batch of (position, event) pairs in one transaction, skipping the
positions it has already applied, so a re-delivered event changes nothing.

``BufferedTx`` keeps a batch's writes in memory (reads see them) and hands the final row of
every touched key to the store at commit; the store writes them all at once. A handler that
raises leaves the store untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from domain.model import DomainEvent
from projections.schema import Key, Row, Table, copy_row, matches, sort_rows


class ViewTx(Protocol):
    """What a handler reads and writes through, inside one batch transaction."""

    def get(self, table: str, key: tuple[Any, ...]) -> dict[str, Any] | None: ...

    def upsert(self, table: str, row: dict[str, Any]) -> None: ...  # row has every column

    def delete(self, table: str, key: tuple[Any, ...]) -> None: ...

    def rows(self, table: str, where: dict[str, Any]) -> list[dict[str, Any]]: ...  # equality filter, key order


class View(Protocol):
    name: str  # e.g. "dispatch_queue"
    tables: tuple[Table, ...]

    def handle(self, position: int, event: DomainEvent, tx: ViewTx) -> None: ...  # pure: no I/O but tx


class ViewStore(Protocol):
    view: View

    def position(self) -> int: ...  # last applied log position (0 = none)

    def apply(self, batch: Sequence[tuple[int, DomainEvent]]) -> int: ...  # one transaction; returns how many applied

    def select(
        self,
        table: str,
        where: dict[str, Any] | None = None,
        order_by: Sequence[str] = (),
        limit: int | None = None,
    ) -> list[dict[str, Any]]: ...

    def snapshot(self) -> dict[str, list[dict[str, Any]]]: ...  # every table's rows sorted by key

    def begin_rebuild(self) -> ViewStore: ...  # a store on fresh scratch tables, position 0

    def swap_in(self, scratch: ViewStore) -> None: ...  # atomically replace live tables with scratch

    def drop(self) -> None: ...


class RebuildBehind(RuntimeError):
    """swap_in refused: the scratch tables are behind the live ones (catch the scratch store up first)."""

    def __init__(self, view: str, scratch: int, live: int) -> None:
        super().__init__(f"view {view!r}: rebuilt to position {scratch}, live is at {live}; catch up and swap again")
        self.scratch_position = scratch
        self.live_position = live


Load = Callable[[Table, Key], Row | None]
Scan = Callable[[Table, Row], list[Row]]


class BufferedTx:
    """A ``ViewTx`` over a store's committed rows (read through ``load``/``scan``) plus this batch's writes."""

    def __init__(self, tables: Mapping[str, Table], load: Load, scan: Scan) -> None:
        self._tables = tables
        self._load = load
        self._scan = scan
        self.pending: dict[str, dict[Key, Row | None]] = {name: {} for name in tables}
        # The committed rows cannot change while the batch runs (the store holds its lock), so reads are cached.
        self._loaded: dict[tuple[str, Key], Row | None] = {}
        self._scanned: dict[tuple[str, tuple[tuple[str, Any], ...]], list[Row]] = {}

    def _table(self, name: str) -> Table:
        try:
            return self._tables[name]
        except KeyError:
            raise ValueError(f"this view has no table {name!r}") from None

    def get(self, table: str, key: tuple[Any, ...]) -> dict[str, Any] | None:
        t = self._table(table)
        k = t.normalise_key(key)
        pending = self.pending[table]
        if k in pending:
            row = pending[k]
        elif (table, k) in self._loaded:
            row = self._loaded[table, k]
        else:
            row = self._loaded[table, k] = self._load(t, k)
        return None if row is None else copy_row(row)

    def upsert(self, table: str, row: dict[str, Any]) -> None:
        t = self._table(table)
        clean = t.normalise(row)
        self.pending[table][t.key_of(clean)] = clean

    def delete(self, table: str, key: tuple[Any, ...]) -> None:
        t = self._table(table)
        self.pending[table][t.normalise_key(key)] = None

    def rows(self, table: str, where: dict[str, Any]) -> list[dict[str, Any]]:
        t = self._table(table)
        flt = t.normalise_where(where)
        pending = self.pending[table]
        cache_key = (table, tuple(sorted(flt.items())))
        if cache_key not in self._scanned:
            self._scanned[cache_key] = self._scan(t, flt)
        found = [r for r in self._scanned[cache_key] if t.key_of(r) not in pending]
        found += [r for r in pending.values() if r is not None and matches(r, flt)]
        return [copy_row(r) for r in sort_rows(t, found)]

    def writes(self, table: str) -> tuple[list[Row], list[Key]]:
        """The rows to upsert and the keys to delete, for the store's commit."""
        pending = self.pending[table]
        return [r for r in pending.values() if r is not None], [k for k, r in pending.items() if r is None]


def fresh_part(batch: Sequence[tuple[int, DomainEvent]], tracked: int) -> list[tuple[int, DomainEvent]]:
    """The batch's events after ``tracked``, in position order, each position once."""
    out: list[tuple[int, DomainEvent]] = []
    last = tracked
    for position, event in sorted(batch, key=lambda pair: pair[0]):
        if position > last:
            out.append((position, event))
            last = position
    return out


def tables_of(view: View) -> dict[str, Table]:
    names = [t.name for t in view.tables]
    if len(set(names)) != len(names):
        raise ValueError(f"view {view.name!r} declares a table twice")
    return {t.name: t for t in view.tables}
