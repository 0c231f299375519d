"""One pass over a JSON value: refuses what cannot be stored and read back, and measures the rest.

A free JSON field (ticket arguments, a decision's result, a termination's value, a message) is
refused, naming the path to the offending part, when it holds something that is not JSON (a set,
a tuple, bytes, a complex number, NaN or an infinity, a key that is not a string), an integer
outside 64 bits, a string with a NUL character (Postgres text and jsonb refuse it) or a lone
surrogate (not UTF-8), more nesting than ``max_depth`` or more than ``max_bytes`` of JSON. The
walk is iterative (a value nested a hundred thousand levels deep gets a clean refusal) and stops
as soon as a bound is passed (a shared sub-list repeated 2**60 times costs no more than the bound).

:func:`raw_extent` is the coarse first look at an argument before pydantic validates it: only its
nesting and size, whatever the types, so validation never meets an unbounded value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.preview import preview

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_Path = tuple[int | str, "_Path"] | None
_quoted = json.encoder.encode_basestring


@dataclass(frozen=True)
class JsonExtent:
    """How deep (levels of arrays and objects) and how large (bytes of compact UTF-8 JSON) a value is."""

    depth: int
    size: int


def path_of(field: str, path: _Path) -> str:
    """``field`` followed by the keys and indexes of ``path`` (long paths keep both ends)."""
    parts: list[str] = []
    while path is not None:
        key, path = path
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif key.isidentifier() and len(key) <= 40:
            parts.append(f".{key}")
        else:
            parts.append(f"[{preview(key, 40)}]")
    parts.reverse()
    if len(parts) > 12:
        parts = [*parts[:6], "...", *parts[-5:]]
    return field + "".join(parts)


def _string_size(text: str, field: str, path: _Path) -> int:
    if "\x00" in text:
        raise InvalidArgument(path_of(field, path), text, "must not contain NUL characters")
    try:
        return len(_quoted(text).encode())
    except UnicodeEncodeError:
        raise InvalidArgument(
            path_of(field, path), text, "must not contain lone surrogates (not valid UTF-8)"
        ) from None


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
    size = deepest = 0
    stack: list[tuple[Any, int, _Path]] = [(value, 0, None)]
    while stack:
        item, depth, path = stack.pop()
        if item is None or item is True or item is False:
            size += 4 if item is not False else 5
        elif isinstance(item, str):
            size += _string_size(item, field, path)
        elif isinstance(item, int):
            if not INT_MIN <= item <= INT_MAX:
                raise InvalidArgument(path_of(field, path), item, "JSON integers must fit in 64 bits")
            size += len(str(item))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidArgument(path_of(field, path), item, "NaN and infinities are not JSON")
            size += len(repr(item))
        elif isinstance(item, list | dict | BaseModel) and (models or not isinstance(item, BaseModel)):
            depth += 1
            if depth > max_depth:
                raise InvalidArgument(field, value, f"is nested more than {max_depth} levels deep (max_json_depth)")
            deepest = max(deepest, depth)
            if isinstance(item, list):
                size += 1 + max(len(item), 1)
                stack.extend((element, depth, (i, path)) for i, element in reversed(list(enumerate(item))))
            else:
                pairs = list(item.__dict__.items() if isinstance(item, BaseModel) else item.items())
                size += 1 + max(len(pairs), 1) + len(pairs)  # braces, commas and colons
                for key, _ in pairs:
                    if not isinstance(key, str):
                        raise InvalidArgument(path_of(field, path), key, "JSON object keys must be strings")
                    size += _string_size(key, field, (key, path))
                stack.extend((element, depth, (key, path)) for key, element in reversed(pairs))
        else:
            raise InvalidArgument(path_of(field, path), item, f"a {type(item).__name__} is not a JSON value")
        if size > max_bytes:
            raise InvalidArgument(field, value, f"is more than {max_bytes} bytes of JSON ({size_limit})")
    return JsonExtent(depth=deepest, size=size)


_CONTAINERS = (list, tuple, set, frozenset, dict, BaseModel)


def raw_extent(field: str, value: Any, *, max_depth: int, max_size: int, why: str = "") -> None:
    """Refuses an argument nested deeper than ``max_depth`` or larger than about ``max_size``
    bytes, whatever it holds (before validation looks at it); ``why`` ends the refusal."""
    size = 0
    stack: list[tuple[Any, int, _Path]] = [(value, 0, None)]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str | bytes | bytearray):
            size += len(item) + 2
        elif isinstance(item, _CONTAINERS):
            depth += 1
            if depth > max_depth:
                raise InvalidArgument(path_of(field, path), value, f"is nested more than {max_depth} levels deep{why}")
            if isinstance(item, dict | BaseModel):
                pairs = item.__dict__ if isinstance(item, BaseModel) else item
                size += 2 + 2 * len(pairs)
                stack.extend((key, depth, path) for key in pairs)
                stack.extend((element, depth, (str(key), path)) for key, element in pairs.items())
            else:
                size += 2 + len(item)
                stack.extend((element, depth, (i, path)) for i, element in enumerate(item))
        else:
            size += 8
        if size > max_size:
            raise InvalidArgument(field, value, f"is larger than {max_size} bytes (more than any limit allows)")
