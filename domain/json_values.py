"""One pass over a JSON value: refuses what cannot be stored and read back, and measures the rest.

A free JSON field (ticket arguments, a decision's result, a termination's value, a message) is
refused, naming the path to the offending part, when it holds something that is not JSON (a set,
a tuple, bytes, a complex number, NaN or an infinity, a key that is not a string), an integer
outside 64 bits, a string with a NUL character (Postgres text and jsonb refuse it) or a lone
surrogate (not UTF-8), more nesting than ``max_depth`` or more than ``max_bytes`` of JSON. The
walk is iterative (a value nested a hundred thousand levels deep gets a clean refusal) and stops
as soon as a bound is passed (a shared sub-list repeated 2**60 times costs no more than the bound).

:func:`raw_extent` is the coarse first look at an argument before pydantic validates it: only its
nesting, size and number of items, whatever the types, so validation never meets an unbounded
value (nor a shared list repeated 2**60 times, which pydantic would expand).
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel

from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.json_walk import Children, JsonExtent, Path, path_of, walk

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_SCALARS = frozenset({str, int, float, bool, type(None)})
_JSON_CONTAINERS = (list, dict)
_RAW_CONTAINERS = (list, tuple, set, frozenset, dict, BaseModel)
_quoted = json.encoder.encode_basestring


def _string_size(text: str, field: str, path: Path) -> int:
    if "\x00" in text:
        raise InvalidArgument(path_of(field, path), text, "must not contain NUL characters")
    try:
        return len(_quoted(text).encode())
    except UnicodeEncodeError:
        raise InvalidArgument(
            path_of(field, path), text, "must not contain lone surrogates (not valid UTF-8)"
        ) from None


def _bulk_size(items: list[Any]) -> int | None:
    """The JSON size of a list of plain ints, floats or strings, checked at C speed; None when it
    holds anything else or something to refuse (the item-by-item walk then names it)."""
    kinds = set(map(type, items))
    if not items or not kinds <= {int, float, str}:
        return None
    if str in kinds:
        if kinds != {str}:
            return None
        joined = "".join(items)
        if "\x00" in joined:
            return None
        try:
            joined.encode()
        except UnicodeEncodeError:
            return None
    elif int in kinds and (min(items) < INT_MIN or max(items) > INT_MAX):
        return None
    try:
        return len(json.dumps(items, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode())
    except ValueError:  # NaN or an infinity
        return None


def json_extent(
    field: str,
    value: Any,
    *,
    max_depth: int,
    max_bytes: int,
    size_limit: str = "max_json_bytes",
    models: bool = False,
) -> JsonExtent:
    """The extent of ``value`` as JSON, or InvalidArgument naming the path to what is wrong with it.

    ``models``: pydantic models inside are walked as the objects they dump to (for messages).
    """

    def is_container(item: Any) -> bool:
        kind = type(item)
        if kind in _SCALARS:
            return False
        return (
            kind is list
            or kind is dict
            or isinstance(item, _JSON_CONTAINERS)
            or (models and isinstance(item, BaseModel))
        )

    def leaf(item: Any, key: int | str | None, parent: Path) -> int:
        """The size of a scalar (``key`` in ``parent``; None for the value itself), or a refusal."""
        if item is None or item is True:
            return 4
        if item is False:
            return 5
        here = None if key is None else (key, parent)
        kind = type(item)
        if kind is str or isinstance(item, str):
            return _string_size(item, field, here)
        if kind is int and INT_MIN <= item <= INT_MAX:
            return len(str(item))
        if isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise InvalidArgument(path_of(field, here), item, "JSON integers must fit in 64 bits")
            return len(str(item))
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidArgument(path_of(field, here), item, "NaN and infinities are not JSON")
            return len(repr(item))
        raise InvalidArgument(path_of(field, here), item, f"a {type(item).__name__} is not a JSON value")

    def expand(item: Any, path: Path) -> tuple[int, Children, int]:
        children: Children = []
        if isinstance(item, list):
            bulk = _bulk_size(item)
            if bulk is not None:
                return bulk, children, len(item)
            own = 1 + max(len(item), 1)
            for i, element in enumerate(item):
                if is_container(element):
                    children.append((element, (i, path)))
                else:
                    own += leaf(element, i, path)
            return own, children, len(item) - len(children)
        pairs = item.__dict__ if isinstance(item, BaseModel) else item
        own = 1 + max(len(pairs), 1) + len(pairs)  # braces, commas and colons
        for key, element in pairs.items():
            if not isinstance(key, str):
                raise InvalidArgument(path_of(field, path), key, "JSON object keys must be strings")
            own += _string_size(key, field, (key, path))
            if is_container(element):
                children.append((element, (key, path)))
            else:
                own += leaf(element, key, path)
        return own, children, len(pairs) - len(children)

    def too_deep(path: Path) -> None:
        raise InvalidArgument(field, value, f"is nested more than {max_depth} levels deep (max_json_depth)")

    def too_large(what: str) -> None:
        raise InvalidArgument(field, value, f"is more than {max_bytes} bytes of JSON ({size_limit})")

    if not is_container(value):
        size = leaf(value, None, None)
        if size > max_bytes:
            too_large("")
        return JsonExtent(depth=0, size=size)
    return walk(value, expand, max_depth=max_depth, max_size=max_bytes, too_deep=too_deep, too_large=too_large)


def raw_extent(
    field: str, value: Any, *, max_depth: int, max_size: int, max_items: int, max_shared: int, why: str = ""
) -> None:
    """Refuses an argument nested deeper than ``max_depth``, larger than about ``max_size`` bytes,
    with more than ``max_items`` items, or repeating shared lists or objects past ``max_shared`` items,
    whatever it holds (before validation looks at it); ``why`` ends a refusal of depth."""
    if type(value) in _SCALARS:
        return  # most arguments: nothing nests in them (the limits measure their length)

    def is_container(item: Any) -> bool:
        return type(item) not in _SCALARS and isinstance(item, _RAW_CONTAINERS)

    def bulk(items: Any) -> int | None:
        """The size of a collection of plain scalars at C speed; None when it holds anything else."""
        kinds = set(map(type, items))
        if not kinds <= _SCALARS:
            return None
        if str not in kinds:
            return 8 * len(items)
        if kinds == {str}:
            return sum(map(len, items)) + 2 * len(items)
        return None

    def size_of(entry: Any) -> int:
        return len(entry) + 2 if isinstance(entry, str | bytes | bytearray) else 8

    def expand(item: Any, path: Path) -> tuple[int, Children, int]:
        pairs = item.__dict__ if isinstance(item, BaseModel) else item if isinstance(item, dict) else None
        count = len(item) if pairs is None else 2 * len(pairs)
        if count > max_items:
            too_large(f"has more than {max_items} items")
        own = 2 + count
        children: Children = []
        quick = bulk(item) if pairs is None else None
        if quick is not None:
            return own + quick, children, count
        if pairs is None:
            for i, entry in enumerate(item):
                if is_container(entry):
                    children.append((entry, (i, path)))
                else:
                    own += size_of(entry)
        else:
            for key, entry in pairs.items():
                own += size_of(key)
                if is_container(key):
                    children.append((key, path))
                if is_container(entry):
                    children.append((entry, (str(key), path)))
                else:
                    own += size_of(entry)
        return own, children, count - len(children)

    def too_deep(path: Path) -> None:
        raise InvalidArgument(path_of(field, path), value, f"is nested more than {max_depth} levels deep{why}")

    def too_large(what: str) -> None:
        raise InvalidArgument(field, value, f"{what} (more than any limit allows)")

    if not is_container(value):
        return
    walk(
        value,
        expand,
        max_depth=max_depth,
        max_size=max_size,
        too_deep=too_deep,
        too_large=too_large,
        max_items=max_items,
        max_shared=max_shared,
    )
