"""Limits on what a command may carry, so that everything it writes can be stored and read back.

:class:`Limits` holds the bounds a host may set (``MailboxService(limits=Limits(...))``, or the
``MAILBOX_MAX_*`` environment variables); each has a default and a ceiling no setting may pass.
A command measures its bounded arguments once, when it is built, against the ceilings
(:data:`CEILING`); the service then checks the measures against its own limits before running it.
Each refusal is an :class:`~run_mailbox.domain.errors.InvalidArgument` naming the field, the
value (shortened) and the limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.json_values import json_extent
from run_mailbox.domain.json_walk import JsonExtent
from run_mailbox.domain.values import MAX_ID_LENGTH, MAX_TEXT_LENGTH

KiB = 1024
MiB = 1024 * KiB

MAX_JSON_DEPTH_CEILING = 128
"""Stored events nest a field's JSON a few levels deeper, and a JSON reader stops near 250 levels."""


class Limits(BaseModel):
    """What a command may carry (every bound is at least 1 and at most its ceiling)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    max_message_bytes: int = Field(1 * MiB, ge=1, le=16 * MiB, description="bytes of one message's JSON")
    max_command_bytes: int = Field(
        4 * MiB,
        ge=1,
        le=16 * MiB,
        description="bytes of JSON in one command: a commit's messages, a suspension's tickets",
    )
    max_json_bytes: int = Field(
        64 * KiB,
        ge=1,
        le=16 * MiB,
        description="bytes of one free JSON field: ticket arguments, a decision's result, a termination's value",
    )
    max_json_depth: int = Field(
        64, ge=1, le=MAX_JSON_DEPTH_CEILING, description="levels of arrays and objects in a JSON field or a message"
    )
    max_tickets: int = Field(100, ge=1, le=10_000, description="tickets in one suspension")
    max_messages_per_commit: int = Field(1_000, ge=1, le=10_000, description="messages in one commit")
    max_text_chars: int = Field(
        MAX_TEXT_LENGTH, ge=1, le=MAX_TEXT_LENGTH, description="characters of free text: an error, a reason"
    )
    max_id_chars: int = Field(
        MAX_ID_LENGTH, ge=36, le=MAX_ID_LENGTH, description="characters of an identifier (the ids it makes have 36)"
    )

    @classmethod
    def ceiling(cls) -> Limits:
        """Every limit at its ceiling: what a command is measured against when it is built."""
        return cls(**ceilings())

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Limits:
        """The limits set by ``MAILBOX_MAX_*`` variables in ``env`` (defaults for the others);
        InvalidArgument naming the variable when one is not a whole number within its bounds."""
        values: dict[str, int] = {}
        for name in cls.model_fields:
            variable = env_variable(name)
            raw = env.get(variable, "").strip()
            if not raw:
                continue
            try:
                values[name] = int(raw.replace("_", ""))
            except ValueError:
                raise InvalidArgument(variable, raw, "must be a whole number") from None
        try:
            return cls(**values)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            name = str(error["loc"][0])
            raise InvalidArgument(env_variable(name), values.get(name), str(error["msg"]).lower()) from None

    def check(self, measures: Iterable[Measure]) -> None:
        """Refuses the first measure past its limit (InvalidArgument naming the field and the limit)."""
        for m in measures:
            if m.depth > self.max_json_depth:
                reason = f"is nested {m.depth} levels deep, more than max_json_depth={self.max_json_depth}"
                raise InvalidArgument(m.field, m.value, reason)
            bound = getattr(self, m.limit)
            if m.size > bound:
                raise InvalidArgument(m.field, m.value, f"{m.size} {m.unit} is more than {m.limit}={bound}")


def env_variable(name: str) -> str:
    """The environment variable of a limit: ``max_message_bytes`` is ``MAILBOX_MAX_MESSAGE_BYTES``."""
    return f"MAILBOX_{name.upper()}"


def ceilings() -> dict[str, int]:
    """The largest value each limit may be set to."""
    return {
        name: int(next(m.le for m in field.metadata if getattr(m, "le", None) is not None))
        for name, field in Limits.model_fields.items()
    }


@dataclass(frozen=True)
class Measure:
    """A bounded quantity of a command: ``size`` (in ``unit``) is bounded by the limit named
    ``limit``, ``depth`` by ``max_json_depth``; ``field`` and ``value`` name it in a refusal."""

    field: str
    value: Any
    limit: str
    size: int
    unit: str
    depth: int = 0


DEFAULT = Limits()
CEILING = Limits.ceiling()


def measure_json(field: str, value: Any, *, limit: str = "max_json_bytes", models: bool = False) -> Measure:
    """Walks a JSON value (refusing what is not storable JSON or past the ceilings) and measures it."""
    extent: JsonExtent = json_extent(
        field,
        value,
        max_depth=CEILING.max_json_depth,
        max_bytes=getattr(CEILING, limit),
        size_limit=limit,
        models=models,
    )
    return Measure(field, value, limit, extent.size, "bytes", extent.depth)


def measure_count(field: str, value: Any, count: int, limit: str, unit: str) -> Measure:
    return Measure(field, value, limit, count, unit)


def measure_chars(field: str, value: str, limit: str) -> Measure:
    return Measure(field, value, limit, len(value), "characters")
