"""The contract between views and stores, and the buffered transaction every store hands to handlers.

A ``View`` is pure: ``handle(position, event, tx)`` reads and writes rows only through ``tx``.
A ``ViewStore`` applies a batch of (position, event) pairs in one transaction, skipping the
positions it has already applied, so a re-delivered event changes nothing.

``BufferedTx`` keeps a batch's writes in memory (reads see them) and hands the final row of
every touched key to the store at commit; the store writes them all at once. A handler that
raises leaves the store untouched.

A view may name the event classes its handler reacts to (``handles``): a runner reading the log
then decodes only the events of those classes and moves the view's position past the others
(``apply(batch, through=...)``); about a third of the log is the mailboxes' own bookkeeping,
which most views never look at. A view without ``handles`` is handed every event.

A view may also name, before a batch runs, the rows its handlers will read (``Prefetching``):
the SQLite and Postgres stores then load them with one query per table and key length and
``BufferedTx`` answers those reads (a missing row included) without a query per key. Reads the
view did not name still work, one query each. The memory store reads dicts and ignores it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Protocol

from run_mailbox.domain.model import DomainEvent
from run_mailbox.projections.schema import Key, Row, Table, matches, sort_rows


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

    def apply(self, batch: Sequence[tuple[int, DomainEvent]], through: int | None = None) -> int:
        """Applies the batch's unseen events in one transaction; returns how many. With ``through``
        (a log position at or after the batch's last), the store's position moves to it even when the
        batch holds nothing new: the events between were read and are not this view's."""
        ...

    def select(
        self,
        table: str,
        where: dict[str, Any] | None = None,
        order_by: Sequence[str] = (),
        limit: int | None = None,
        above: dict[str, Any] | None = None,  # column -> exclusive lower bound: a keyset page
    ) -> list[dict[str, Any]]: ...

    def count(self, table: str, where: dict[str, Any] | None = None) -> int: ...  # rows matching, none read

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


class RebuildFailed(RuntimeError):
    """A rebuild never caught up with the live view (writers and live runners kept moving it): nothing
    was swapped in."""

    def __init__(self, view: str, attempts: int) -> None:
        super().__init__(
            f"view {view!r}: the rebuild could not overtake the live view in {attempts} tries "
            "(the writers outpaced it); nothing was swapped in: run it again when they are quieter"
        )
        self.view = view


Load = Callable[[Table, Key], Row | None]
Scan = Callable[[Table, Row], list[Row]]
LoadMany = Callable[[Table, int, list[Key]], list[Row]]  # (table, prefix length, prefixes) -> committed rows


class Prefetching(Protocol):
    """A view that names, before a batch runs, the rows its handlers will read, so a store can load
    them with one query per table instead of one per key. Optional: stores work without it."""

    def prefetch(self, batch: Sequence[tuple[int, DomainEvent]]) -> Mapping[str, Iterable[tuple[Any, ...]]]:
        """Per table, the keys ``get`` will ask for; a key shorter than the table's key stands for
        every row whose key starts with it (what ``rows`` filtering on those columns reads)."""
        ...


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
        # Key prefixes whose committed rows are all loaded: table -> prefix length -> prefix -> rows.
        self._covered: dict[str, dict[int, dict[Key, list[Row]]]] = {}
        # This batch's rows by the values of the columns ``rows`` filtered on: table -> columns -> values -> keys.
        self._by_columns: dict[str, dict[tuple[str, ...], dict[tuple[Any, ...], dict[Key, None]]]] = {
            name: {} for name in tables
        }

    def _table(self, name: str) -> Table:
        try:
            return self._tables[name]
        except KeyError:
            raise ValueError(f"this view has no table {name!r}") from None

    def preload(self, table: str, length: int, prefixes: Iterable[Key], rows: Iterable[Row]) -> None:
        """Records ``rows`` as every committed row whose key starts with one of ``prefixes`` (each of
        ``length`` normalised values); a key with no row under a whole-key prefix reads as ``None``."""
        t = self._table(table)
        whole = length == len(t.key)
        covered = None if whole else self._covered.setdefault(table, {}).setdefault(length, {})
        for prefix in prefixes:
            if covered is None:
                self._loaded.setdefault((table, prefix), None)
            else:
                covered.setdefault(prefix, [])
        for row in rows:
            key = t.key_of(row)
            self._loaded[table, key] = row
            if covered is not None:
                covered.setdefault(key[:length], []).append(row)

    def _covers(self, table: str, key: Key) -> bool:
        return any(key[:n] in prefixes for n, prefixes in self._covered.get(table, {}).items())

    def read_any(self, table: str) -> bool:
        """Whether this batch read any committed row (or absence of one) of ``table``."""
        return table in self._covered or any(name == table for name, _ in self._loaded)

    def exists(self, table: str, key: Key) -> bool | None:
        """Whether ``key`` has a committed row, as far as this batch read them (``None``: not read)."""
        if (table, key) in self._loaded:
            return self._loaded[table, key] is not None
        return False if self._covers(table, key) else None

    def get(self, table: str, key: tuple[Any, ...]) -> dict[str, Any] | None:
        t = self._table(table)
        k = t.normalise_key(key)
        pending = self.pending[table]
        if k in pending:
            row = pending[k]
        elif (table, k) in self._loaded:
            row = self._loaded[table, k]
        elif self._covers(table, k):
            row = None
        else:
            row = self._loaded[table, k] = self._load(t, k)
        return None if row is None else t.copy(row)

    def upsert(self, table: str, row: dict[str, Any]) -> None:
        t = self._table(table)
        clean = t.normalise(row)
        self._put(table, t.key_of(clean), clean)

    def delete(self, table: str, key: tuple[Any, ...]) -> None:
        t = self._table(table)
        self._put(table, t.normalise_key(key), None)

    def _put(self, table: str, key: Key, row: Row | None) -> None:
        pending = self.pending[table]
        indexes = self._by_columns[table]
        if indexes:
            old = pending.get(key)
            for cols, index in indexes.items():
                if old is not None:
                    index.get(tuple(old[c] for c in cols), {}).pop(key, None)
                if row is not None:
                    index.setdefault(tuple(row[c] for c in cols), {})[key] = None
        pending[key] = row

    def _pending_matching(self, table: str, flt: Row) -> list[Row]:
        cols = tuple(sorted(flt))
        index = self._by_columns[table].get(cols)
        if index is None:  # the first ``rows`` on these columns in this batch: index the batch's rows by them
            index = self._by_columns[table][cols] = {}
            for key, row in self.pending[table].items():
                if row is not None:
                    index.setdefault(tuple(row[c] for c in cols), {})[key] = None
        pending = self.pending[table]
        return [row for k in index.get(tuple(flt[c] for c in cols), ()) if (row := pending[k]) is not None]

    def _committed(self, t: Table, flt: Row) -> list[Row]:
        for n, prefixes in self._covered.get(t.name, {}).items():
            cols = t.key[:n]
            if all(c in flt for c in cols) and (prefix := tuple(flt[c] for c in cols)) in prefixes:
                return [r for r in prefixes[prefix] if matches(r, flt)]
        cache_key = (t.name, tuple(sorted(flt.items())))
        if cache_key not in self._scanned:
            self._scanned[cache_key] = self._scan(t, flt)
        return self._scanned[cache_key]

    def rows(self, table: str, where: dict[str, Any]) -> list[dict[str, Any]]:
        t = self._table(table)
        flt = t.normalise_where(where)
        pending = self.pending[table]
        found = [r for r in self._committed(t, flt) if t.key_of(r) not in pending]
        found += self._pending_matching(table, flt)
        return [t.copy(r) for r in sort_rows(t, found)]

    def writes(self, table: str) -> tuple[list[Row], list[Key]]:
        """The rows to upsert and the keys to delete, for the store's commit."""
        pending = self.pending[table]
        return [r for r in pending.values() if r is not None], [k for k, r in pending.items() if r is None]


def prefetch(view: View, batch: Sequence[tuple[int, DomainEvent]], tx: BufferedTx, load_many: LoadMany) -> None:
    """Loads into ``tx`` the rows ``view.prefetch`` names for ``batch`` (nothing for a view without it):
    one ``load_many`` call per table and key-prefix length."""
    wanted = getattr(view, "prefetch", None)
    if wanted is None:
        return
    tables = tables_of(view)
    for name, keys in wanted(batch).items():
        t = tables.get(name)
        if t is None:
            raise ValueError(f"view {view.name!r} prefetches from {name!r}, which is not one of its tables")
        by_length: dict[int, set[Key]] = {}
        for key in keys:
            prefix = t.normalise_prefix(key)
            by_length.setdefault(len(prefix), set()).add(prefix)
        for length, prefixes in sorted(by_length.items()):
            listed = list(prefixes)
            tx.preload(name, length, listed, load_many(t, length, listed))


def handled_kinds(view: View) -> tuple[type[DomainEvent], ...] | None:
    """The event classes ``view`` names in ``handles`` (their subclasses included), or None: every event."""
    kinds = getattr(view, "handles", None)
    return None if kinds is None else tuple(kinds)


def new_position(batch: Sequence[tuple[int, DomainEvent]], tracked: int, through: int | None) -> int:
    """Where a store's position goes after applying ``batch`` (its fresh part) and reading up to ``through``."""
    last = max((position for position, _ in batch), default=tracked)
    return max(tracked, last, through or 0)


def fresh_part(batch: Sequence[tuple[int, DomainEvent]], tracked: int) -> list[tuple[int, DomainEvent]]:
    """The batch's events after ``tracked``, in position order, each position once."""
    out: list[tuple[int, DomainEvent]] = []
    last = tracked
    for position, event in sorted(batch, key=itemgetter(0)):
        if position > last:
            out.append((position, event))
            last = position
    return out


def tables_of(view: View) -> dict[str, Table]:
    names = [t.name for t in view.tables]
    if len(set(names)) != len(names):
        raise ValueError(f"view {view.name!r} declares a table twice")
    return {t.name: t for t in view.tables}
