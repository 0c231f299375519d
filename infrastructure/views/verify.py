"""``verify``: every view rebuilt into scratch tables and diffed with the live one at the same position."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ViewDiff:
    """How a live view differs from a fresh replay of the log up to ``position`` (empty: identical)."""

    view: str
    position: int
    differences: list[str] = field(default_factory=list)


def diff_rows(live: dict[str, list[dict[str, Any]]], fresh: dict[str, list[dict[str, Any]]]) -> list[str]:
    problems = []
    for table in sorted(set(live) | set(fresh)):
        live_rows = {repr(sorted(r.items())) for r in live.get(table, [])}
        fresh_rows = {repr(sorted(r.items())) for r in fresh.get(table, [])}
        problems += [f"{table}: live row not in a fresh replay: {row}" for row in sorted(live_rows - fresh_rows)]
        problems += [f"{table}: fresh replay row missing from live: {row}" for row in sorted(fresh_rows - live_rows)]
    return problems
