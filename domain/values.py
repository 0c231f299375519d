"""Value objects and argument checks shared by the aggregates."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from run_mailbox.domain.errors import InvalidArgument

MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 16_384
MAX_MILLIS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

Millis = Annotated[int, Field(ge=0, le=MAX_MILLIS)]


class Value(BaseModel):
    """Base of every immutable value object."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class DispatchStatus(StrEnum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    ACKED = "acked"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"
    DEAD_LETTER = "dead_letter"

    @property
    def is_terminal(self) -> bool:
        return self not in (DispatchStatus.QUEUED, DispatchStatus.CLAIMED)


DeadLetterReason = Literal["attempts_exhausted", "lease_expired", "permanent_failure"]
"""Why a dispatch was dead-lettered (``DispatchDeadLettered.reason``): out of attempts after a nack,
its lease expired on the last attempt, or the host reported a permanent failure."""


class RunStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    WAITING = "waiting"
    DONE = "done"


class TerminationReason(Value):
    """Why a run ended, in the upstream's adjacently tagged shape."""

    type: Literal[
        "natural_end",
        "behavior_requested",
        "stopped",
        "cancelled",
        "blocked",
        "suspended",
        "error",
    ]
    value: Any = None

    @classmethod
    def natural_end(cls) -> TerminationReason:
        return cls(type="natural_end")

    @classmethod
    def cancelled(cls) -> TerminationReason:
        return cls(type="cancelled")

    @classmethod
    def error(cls, message: str) -> TerminationReason:
        return cls(type="error", value=message)

    def to_json(self) -> dict[str, Any]:
        if self.value is None:
            return {"type": self.type}
        return {"type": self.type, "value": self.value}


# ---------------------------------------------------------------- argument checks


def text_problem(value: str, *, max_length: int = MAX_TEXT_LENGTH) -> str | None:
    """Why ``value`` cannot be stored as text (None when it can): blank, too long, a NUL
    character (Postgres text refuses it) or a lone surrogate (not encodable as UTF-8)."""
    if len(value) > max_length:
        return f"must be at most {max_length} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode()
    except UnicodeEncodeError:
        return "must not contain lone surrogates (not valid UTF-8)"
    if not value.strip():
        return "must not be empty or blank"
    return None


def check_text(field: str, value: Any, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """A non-blank string without NUL or lone surrogates, at most ``max_length`` characters."""
    if not isinstance(value, str):
        raise InvalidArgument(field, value, "must be a string")
    problem = text_problem(value, max_length=max_length)
    if problem is not None:
        raise InvalidArgument(field, value, problem)
    return value


def check_id(field: str, value: Any) -> str:
    """An identifier: non-blank, printable, no surrounding whitespace, bounded length."""
    text = check_text(field, value, max_length=MAX_ID_LENGTH)
    if text != text.strip():
        raise InvalidArgument(field, value, "must not have leading or trailing whitespace")
    if not text.isprintable():
        raise InvalidArgument(field, value, "must not contain control characters")
    return text


def check_optional_id(field: str, value: Any) -> str | None:
    return None if value is None else check_id(field, value)


def check_int(field: str, value: Any, *, low: int, high: int) -> int:
    """An integer (not a bool) within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgument(field, value, "must be an integer")
    if not low <= value <= high:
        raise InvalidArgument(field, value, f"must be between {low} and {high}")
    return value


def check_millis(field: str, value: Any) -> int:
    return check_int(field, value, low=0, high=MAX_MILLIS)
