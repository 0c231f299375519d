"""The shape of a view's tables, and the one normalisation every store applies to rows.

A view declares its tables with ``Table`` and ``Column``; stores create them (prefixed,
typed) and pass every row through ``Table.normalise`` first, so the three stores hold the
same values: enums become their values, JSON columns hold what a JSON round trip gives
(tuples become lists), and a row with a missing or unknown column is refused.

Ordering is the same everywhere: text by code point, ``None`` before any value, and rows
with equal sort columns ordered by their key.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal, get_args

ColumnType = Literal["text", "int", "bool", "json"]
Row = dict[str, Any]
Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Document:
    """A JSON value handed over to a json column by the code that just built it from JSON types
    only (str keys, finite numbers; what ``model_dump(mode="json")`` gives) and keeps no reference
    to: stores take it as it is, without the copy and check that every other value gets. For
    handlers that render a document per event (the canonical feed); a value that is not one of
    these is checked and copied."""

    value: Any


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType  # json = any JSON value (JSON text in the SQL stores)
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    name: str  # logical name, e.g. "dispatch_queue"; stores prefix/suffix it
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # primary key columns
    indexes: tuple[tuple[str, ...], ...] = ()
    # Derived once (rows are normalised per write, so these are read very often).
    column_names: tuple[str, ...] = field(init=False, repr=False, compare=False)
    json_columns: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _by_name: dict[str, Column] = field(init=False, repr=False, compare=False)
    _plan: tuple[tuple[str, type | None, Column], ...] = field(init=False, repr=False, compare=False)
    _key_plan: tuple[tuple[type, Column], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name!r} names a column twice")
        for cols in (self.key, *self.indexes):
            unknown = [c for c in cols if c not in names]
            if unknown or not cols:
                raise ValueError(f"table {self.name!r}: key or index {cols!r} names unknown columns {unknown}")
        by_name = {c.name: c for c in self.columns}
        for name in self.key:
            if by_name[name].type == "json":
                raise ValueError(f"table {self.name!r}: key column {name!r} cannot be json")
        derived = {
            "column_names": tuple(names),
            "json_columns": tuple(c.name for c in self.columns if c.type == "json"),
            "_by_name": by_name,
            # (name, the exact type a value already in store form has, column); json is always checked
            "_plan": tuple((c.name, _EXACT.get(c.type), c) for c in self.columns),
            "_key_plan": tuple((_EXACT[by_name[n].type], by_name[n]) for n in self.key),
        }
        for attr, value in derived.items():
            object.__setattr__(self, attr, value)

    def column(self, name: str) -> Column:
        try:
            return self._by_name[name]
        except KeyError:
            raise ValueError(f"table {self.name!r} has no column {name!r}") from None

    def normalise(self, row: Mapping[str, Any]) -> Row:
        """The row as every store holds it; refuses missing, unknown or ill-typed values."""
        if len(row) != len(self._plan):
            raise self._shape_error(row)
        out: Row = {}
        for name, exact, column in self._plan:  # as many columns as the table, each found: none is unknown
            try:
                value = row[name]
            except KeyError:
                raise self._shape_error(row) from None
            out[name] = value if type(value) is exact else normalise_value(self.name, column, value)
        return out

    def _shape_error(self, row: Mapping[str, Any]) -> ValueError:
        missing = [n for n in self.column_names if n not in row]
        extra = [n for n in row if n not in self._by_name]
        return ValueError(f"row for {self.name!r}: missing columns {missing}, unknown columns {extra}")

    def normalise_key(self, key: Sequence[Any]) -> Key:
        key = tuple(key)
        if len(key) != len(self._key_plan):
            raise ValueError(f"key for {self.name!r} needs {len(self.key)} values {self.key}, got {key!r}")
        return self._normalise_prefix(key)

    def normalise_prefix(self, prefix: Sequence[Any]) -> Key:
        """The first ``len(prefix)`` key values, normalised (a whole key is a prefix too)."""
        prefix = tuple(prefix)
        if not 0 < len(prefix) <= len(self._key_plan):
            raise ValueError(f"key prefix for {self.name!r} takes 1 to {len(self.key)} of {self.key}, got {prefix!r}")
        return self._normalise_prefix(prefix)

    def _normalise_prefix(self, values: Key) -> Key:
        for value, (exact, _) in zip(values, self._key_plan, strict=False):
            if type(value) is not exact:
                break
        else:
            return values
        return tuple(normalise_value(self.name, c, v) for v, (_, c) in zip(values, self._key_plan, strict=False))

    def copy(self, row: Row) -> Row:
        """A copy of a stored row the caller may change (JSON values included)."""
        out = dict(row)
        for name in self.json_columns:
            value = out[name]
            if isinstance(value, dict | list):
                out[name] = json_value(value)
        return out

    def normalise_where(self, where: Mapping[str, Any] | None) -> Row:
        """An equality filter; ``None`` matches NULL. JSON columns cannot be filtered on."""
        out: Row = {}
        for name, value in (where or {}).items():
            column = self.column(name)
            if column.type == "json":
                raise ValueError(f"table {self.name!r}: cannot filter on json column {name!r}")
            out[name] = None if value is None else normalise_value(self.name, column, value)
        return out

    def normalise_above(self, above: Mapping[str, Any] | None) -> Row:
        """Exclusive lower bounds on text or int columns (a row whose value is NULL is below any)."""
        out: Row = {}
        for name, value in (above or {}).items():
            column = self.column(name)
            if column.type not in ("text", "int") or value is None:
                raise ValueError(f"table {self.name!r}: 'above' takes a text or int column and a value, got {name!r}")
            out[name] = normalise_value(self.name, column, value)
        return out

    def key_of(self, row: Mapping[str, Any]) -> Key:
        return tuple(row[n] for n in self.key)

    def order_columns(self, order_by: Sequence[str]) -> list[tuple[str, bool]]:
        """``order_by`` as (column, descending) pairs, a ``-name`` meaning descending, key last."""
        out: list[tuple[str, bool]] = []
        for spec in order_by:
            name, desc = (spec[1:], True) if spec.startswith("-") else (spec, False)
            if self.column(name).type == "json":
                raise ValueError(f"table {self.name!r}: cannot order by json column {name!r}")
            out.append((name, desc))
        seen = {n for n, _ in out}
        out.extend((n, False) for n in self.key if n not in seen)
        return out


_EXACT: dict[str, type] = {"text": str, "int": int, "bool": bool}


def normalise_value(table: str, column: Column, value: Any) -> Any:
    handed_over = type(value) is Document and column.type == "json"
    if handed_over:
        value = value.value
    if value is None:
        if not column.nullable:
            raise ValueError(f"{table}.{column.name} is not nullable")
        return None
    if isinstance(value, Enum):
        value = value.value
    kind = column.type
    if kind == "json":
        return value if handed_over else json_value(value)
    ok = {
        "text": isinstance(value, str),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
    }[kind]
    if not ok:
        raise TypeError(f"{table}.{column.name} is {kind}, got {type(value).__name__} {value!r}")
    return str(value) if kind == "text" else int(value) if kind == "int" else bool(value)


class _NotNative(Exception):
    pass


def _native(value: Any) -> Any:
    """A copy of a value made of JSON types only (str keys, finite floats), else ``_NotNative``."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise _NotNative
            out[k] = _native(v)
        return out
    if kind is list or kind is tuple:
        return [_native(v) for v in value]
    if kind is float and value - value == 0:  # finite
        return value
    raise _NotNative


def json_value(value: Any) -> Any:
    """What a JSON round trip gives for ``value`` (tuples become lists, enums their values; NaN is refused),
    as a fresh copy; values already made of JSON types are copied without serialising them."""
    try:
        return _native(value)
    except (_NotNative, RecursionError):  # the round trip names the problem (or converts the value)
        return json.loads(json.dumps(value, allow_nan=False))


def checked_limit(limit: int | None) -> int | None:
    """A ``select`` limit: None (no limit) or a non-negative int, the same on every store."""
    if limit is not None and (type(limit) is not int or limit < 0):
        raise ValueError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


def matches(row: Mapping[str, Any], where: Mapping[str, Any], above: Mapping[str, Any] | None = None) -> bool:
    return all(row[name] == value for name, value in where.items()) and all(
        row[name] is not None and row[name] > value for name, value in (above or {}).items()
    )


def copy_row(row: Mapping[str, Any]) -> Row:
    """A copy the caller may change without touching the stored row (JSON values included)."""
    return {k: json_value(v) if isinstance(v, dict | list) else v for k, v in row.items()}


def sort_rows(table: Table, rows: Iterable[Row], order_by: Sequence[str] = ()) -> list[Row]:
    """Rows in the order every store returns them (``None`` first ascending, key breaks ties)."""
    out = list(rows)
    for name, desc in reversed(table.order_columns(order_by)):
        out.sort(key=_nulls_first(name), reverse=desc)
    return out


def _nulls_first(name: str) -> Callable[[Row], tuple[Any, ...]]:
    return lambda row: (0,) if row[name] is None else (1, row[name])


def table_of(
    row_type: type[Any], name: str, *, key: tuple[str, ...], indexes: tuple[tuple[str, ...], ...] = ()
) -> Table:
    """The table whose rows ``row_type`` (a pydantic model) reads: a column per field, in field order;
    ``str``/``int``/``bool`` fields are text/int/bool columns, anything else JSON; ``X | None`` is nullable."""
    columns = []
    for field_name, info in row_type.model_fields.items():
        annotation = info.annotation
        nullable = type(None) in get_args(annotation)
        base = next((a for a in get_args(annotation) if a is not type(None)), annotation) if nullable else annotation
        kind: ColumnType = {str: "text", int: "int", bool: "bool"}.get(base, "json")  # type: ignore[assignment]
        columns.append(Column(field_name, kind, nullable=nullable))
    return Table(name=name, columns=tuple(columns), key=key, indexes=indexes)
