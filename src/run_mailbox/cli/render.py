"""How the command line shows things: times as ISO-8601 with a relative hint for people, raw
milliseconds in JSON, one JSON document on stdout for ``--json``, and the options every command shares."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import BaseModel

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout (times in ms).")]


_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("min", 60_000), ("s", 1_000))
_DURATION = re.compile(r"^(\d+)\s*(ms|s|m|min|h|d)$")
_DURATION_MS = {"ms": 1, "s": 1_000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def iso(ms: int) -> str:
    """``2026-12-01T23:15:04.123Z``: UTC, to the millisecond."""
    moment = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def relative(ms: int, now: int) -> str:
    """``3 min ago``, ``in 20 s``, ``just now``: the largest whole unit."""
    delta = now - ms
    size = abs(delta)
    for unit, length in _UNITS:
        if size >= length:
            amount = f"{size // length} {unit}"
            return f"{amount} ago" if delta > 0 else f"in {amount}"
    return "just now"


def when(ms: int | None, now: int) -> str:
    """``2026-12-01T23:15:04.123Z (3 min ago)``; empty for no time."""
    return "" if ms is None else f"{iso(ms)} ({relative(ms, now)})"


def parse_time(text: str | None, now: int, option: str) -> int | None:
    """A time given on the command line, in milliseconds: ISO-8601 (``2026-12-01T23:15:04Z``; without
    an offset it is UTC), milliseconds since the epoch, or a duration ago (``90s``, ``15m``, ``2h``, ``7d``)."""
    if text is None:
        return None
    value = text.strip()
    if value.isdigit():
        return int(value)
    duration = _DURATION.match(value)
    if duration is not None:
        return max(0, now - int(duration.group(1)) * _DURATION_MS[duration.group(2)])
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not a time: give ISO-8601 (2026-12-01T23:15:04Z), milliseconds, or a duration ago (2h)",
            param_hint=option,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def plain(value: Any) -> Any:
    """A model (or a list or dict of them) as JSON values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def emit(document: Any) -> None:
    """Prints one JSON document on stdout."""
    typer.echo(json.dumps(plain(document), indent=2, ensure_ascii=False))
