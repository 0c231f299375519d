"""The iterative walk under every check of a JSON value (``json_values``): no recursion, each
distinct container visited once, sizes and depths as those of the JSON the value dumps to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from run_mailbox.domain.preview import preview

Path = tuple[int | str, "Path"] | None
"""Where an item is: its key or index, then its parent's path (None for the value itself)."""


@dataclass(frozen=True)
class JsonExtent:
    """How deep (levels of arrays and objects) and how large (bytes of compact UTF-8 JSON) a value is."""

    depth: int
    size: int


def path_of(field: str, path: Path) -> str:
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


Children = list[tuple[Any, Path]]
Expand = Callable[[Any, Path], tuple[int, Children, int]]
"""A container's own size (its leaves included), its child containers, and how many leaves it has."""
_EXIT = object()


def walk(
    value: Any,
    expand: Expand,
    *,
    max_depth: int,
    max_size: int,
    too_deep: Callable[[Path], None],
    too_large: Callable[[str], None],
    max_items: int = 2**62,
    max_shared: int = 2**62,
) -> JsonExtent:
    """Depth-first over the containers of ``value`` without recursion (``value`` is a container).

    ``expand`` sizes a container with its leaves and lists its child containers. A container met
    again (a shared reference) counts its size, height and items without being walked again, so a
    value is walked in time proportional to its distinct parts, while its size and depth are those of
    the JSON it dumps to; a cycle never ends, so it is refused as too deep. ``max_items`` bounds the
    items of the expanded value, ``max_shared`` those that come from containers met again.
    """
    size = items = shared = 0
    memo: dict[int, tuple[int, int, int]] = {}  # a walked container's id: (its size, height, items)
    frames: list[list[int]] = []  # the open containers: [id, size and items when entered, level, deepest below]
    stack: list[tuple[Any, int, Path]] = [(value, 0, None)]
    deepest = 0
    while stack:
        item, depth, path = stack.pop()
        if item is _EXIT:
            key, entered, counted, level, below = frames.pop()
            memo[key] = (size - entered, below - level, items - counted)
            if frames:
                frames[-1][4] = max(frames[-1][4], below)
            continue
        level = depth + 1
        known = memo.get(id(item))
        reach = level + known[1] if known is not None else level
        if reach > max_depth:
            too_deep(path)
        deepest = max(deepest, reach)
        if known is not None:
            size, items, shared = size + known[0], items + known[2], shared + known[2]
            if frames:
                frames[-1][4] = max(frames[-1][4], reach)
        else:
            own, children, leaves = expand(item, path)
            if not children:  # only leaves: done at once
                memo[id(item)] = (own, 0, 1 + leaves)
                if frames:
                    frames[-1][4] = max(frames[-1][4], level)
            else:
                frames.append([id(item), size, items, level, level])
                stack.append((_EXIT, level, path))
                stack.extend((child, level, child_path) for child, child_path in reversed(children))
            size, items = size + own, items + 1 + leaves
        if size > max_size:
            too_large(f"is larger than {max_size} bytes")
        if items > max_items:
            too_large(f"has more than {max_items} items")
        if shared > max_shared:
            too_large(f"repeats shared lists or objects past {max_shared} items")
    return JsonExtent(depth=deepest, size=size)
