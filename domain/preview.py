"""A short, safe rendering of any value for error messages.

An offending argument can be megabytes long or nested a hundred thousand levels deep; rendering
it with ``repr`` would copy all of it, or overflow the stack. :func:`preview` renders at most a
few levels and a few items of each container (pydantic models included) and cuts long strings,
so building an error never fails and never costs more than the preview itself.
"""

from __future__ import annotations

import reprlib
from typing import Any

from pydantic import BaseModel

MAX_SHOWN = 80


class _Preview(reprlib.Repr):
    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 4
        self.maxdict = 4
        self.maxstring = 60
        self.maxlong = 40
        self.maxother = 60

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, BaseModel):
            if level <= 0:
                return f"{type(x).__name__}(...)"
            items = list(x.__dict__.items())
            shown = [f"{name}={self.repr1(value, level - 1)}" for name, value in items[: self.maxdict]]
            if len(items) > self.maxdict:
                shown.append("...")
            return f"{type(x).__name__}({', '.join(shown)})"
        return super().repr1(x, level)

    def repr_str(self, x: str, level: int) -> str:
        if len(x) <= self.maxstring:
            return repr(x)
        return f"{x[: self.maxstring]!r}..."


_PREVIEW = _Preview()


def preview(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to about ``limit`` characters, without rendering what is cut."""
    try:
        text = _PREVIEW.repr(value)
    except RecursionError:  # a container of a type reprlib does not know, nested too deep
        text = f"<{type(value).__name__}>"
    except Exception:  # a broken __repr__ must not hide the refusal
        text = f"<{type(value).__name__}>"
    if isinstance(value, str) and len(value) > _PREVIEW.maxstring:
        text += f" ({len(value)} chars)"
    if len(text) > limit:
        text = f"{text[:limit]}..."
    return text
