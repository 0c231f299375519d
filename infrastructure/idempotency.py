"""Command digests for idempotency keys.

The digest covers the command's name and its arguments, not ``now``: a retry issued a
moment later is still the same command. It is a SHA-256 of canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel


def _plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def command_digest(command: str, params: dict[str, Any]) -> str:
    text = json.dumps(
        {"command": command, "params": _plain(params)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(text.encode()).hexdigest()
