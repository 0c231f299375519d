"""What every command model shares: the clock and key every command takes, the argument
types and their checks, the idempotency digest, and typed refusals of bad arguments.

A command is a frozen pydantic dataclass declared with :func:`command_model`: its fields are the
command's arguments (positional ones first, then ``KW_ONLY``), its docstring is the command's
documentation, and building one validates every argument. A bad argument raises
:class:`~run_mailbox.domain.errors.InvalidArgument` naming the field and the value, before any
store is touched.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from dataclasses import KW_ONLY, fields
from typing import Annotated, Any, ClassVar, Generic, TypeVar, cast, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass
from pydantic_core import ArgsKwargs
from typing_extensions import dataclass_transform

from run_mailbox.domain import policies
from run_mailbox.domain.errors import InvalidArgument
from run_mailbox.domain.json_values import raw_extent
from run_mailbox.domain.limits import CEILING, MAX_JSON_DEPTH_CEILING, Measure, measure_chars
from run_mailbox.domain.values import MAX_ID_LENGTH, MAX_MILLIS, MAX_TEXT_LENGTH, text_problem

R = TypeVar("R")
C = TypeVar("C", bound=type)


def check_identifier(field: str, value: str) -> str:
    """``value`` as an identifier, else InvalidArgument naming ``field`` (for nested arguments)."""
    try:
        return _identifier(value)
    except ValueError as exc:
        raise InvalidArgument(field, value, str(exc)) from None


def _identifier(value: str) -> str:
    problem = text_problem(value, max_length=MAX_ID_LENGTH)
    if problem is None and value != value.strip():
        problem = "must not have leading or trailing whitespace"
    if problem is None and not value.isprintable():
        problem = "must not contain control characters"
    if problem is not None:
        raise ValueError(problem)
    return value


def _text(value: str) -> str:
    problem = text_problem(value, max_length=MAX_TEXT_LENGTH)
    if problem is not None:
        raise ValueError(problem)
    return value


def check_free_text(field: str, value: str | None) -> None:
    """Optional free text (a decision's reason): may be blank; NUL, lone surrogates and more than
    16,384 characters are refused."""
    if value is None:
        return
    problem = text_problem(value or "-", max_length=MAX_TEXT_LENGTH)
    if problem is not None and (value.strip() or "blank" not in problem):
        raise InvalidArgument(field, value, problem)


def check_later(field: str, value: int, now: int, delta: int) -> None:
    """Refuses a command whose derived time ``now + delta`` would pass the latest time."""
    if now + delta > MAX_MILLIS:
        raise InvalidArgument(
            field, value, f"now ({now}) + {delta} ms passes the latest time, {MAX_MILLIS} (9999-12-31T23:59:59.999Z)"
        )


Id = Annotated[str, Strict(), AfterValidator(_identifier)]
"""An identifier: a non-blank string of at most 256 printable characters, no surrounding whitespace."""
Text = Annotated[str, Strict(), AfterValidator(_text)]
"""Free text (an error, a reason): non-blank, no NUL, at most 16,384 characters."""
Millis = Annotated[int, Strict(), Field(ge=0, le=MAX_MILLIS)]
"""Integer milliseconds since the Unix epoch."""
Priority = Annotated[int, Strict(), Field(ge=0, le=policies.MAX_PRIORITY)]
"""0 is the highest priority, 255 the lowest."""
MaxAttempts = Annotated[int, Strict(), Field(ge=1, le=policies.MAX_MAX_ATTEMPTS)]
LeaseMs = Annotated[int, Strict(), Field(ge=policies.MIN_LEASE_MS, le=policies.MAX_LEASE_MS)]
Limit = Annotated[int, Strict(), Field(ge=1, le=policies.MAX_BATCH_LIMIT)]


_MISSING = object()


def _field_path(cls: type[Any], loc: tuple[int | str, ...], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``messages[0].content[1].input.cmd`` from pydantic's location: a leading int is a positional
    argument's index, and the union tags pydantic adds (``tool_use``, ``dict``, ``list``) are dropped
    by following the location through the arguments themselves."""
    parts = list(loc)
    if not parts:
        return "arguments"
    current: Any = _MISSING
    if isinstance(parts[0], int):
        positional = [f.name for f in fields(cls) if f.init and not f.kw_only]
        index = parts[0]
        parts[0] = positional[index] if index < len(positional) else f"argument {index + 1}"
        current = args[index] if index < len(args) else _MISSING
    else:
        current = kwargs.get(parts[0], _MISSING)
    path = str(parts[0])
    for part in parts[1:]:
        child = _child(current, part)
        if child is _MISSING and current is not _MISSING:
            continue  # a tag of a union, not a key or an index of the value
        current = child
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _child(value: Any, part: int | str) -> Any:
    if isinstance(value, list | tuple) and isinstance(part, int) and -len(value) <= part < len(value):
        return value[part]
    if isinstance(value, dict):
        return value.get(part, _MISSING)
    if isinstance(value, BaseModel) and isinstance(part, str):
        return value.__dict__.get(part, _MISSING)
    return _MISSING


def _refusal(cls: type[Any], exc: ValidationError, args: tuple[Any, ...], kwargs: dict[str, Any]) -> InvalidArgument:
    """The first problem pydantic found, as an InvalidArgument naming the field and its value."""
    error = exc.errors(include_url=False)[0]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, InvalidArgument):  # a validator named the precise field itself
        return cause
    field = _field_path(cls, error["loc"], args, kwargs)
    if error["type"] == "missing" or error["type"] == "missing_argument":
        return InvalidArgument(field, None, "is required")
    if error["type"] == "unexpected_keyword_argument":
        return InvalidArgument(field, kwargs.get(field), "is not an argument of this command")
    if error["type"] == "recursion_loop":
        return InvalidArgument(field, "<too deeply nested>", "is nested too deep")
    reason = str(error["msg"]).removeprefix("Value error, ")
    return InvalidArgument(field, error.get("input"), reason)


# Bounds of the first look at an argument, before validation (the real limits are checked after):
# under pydantic's own recursion guard, above every limit a host may set.
_RAW_DEPTH = 200
_RAW_SIZE = 2 * CEILING.max_command_bytes
_RAW_ITEMS = 500_000
_RAW_SHARED = 100_000  # a list or object used twice counts twice (as JSON): bounded, or 2**60 items pass
_RAW_WHY = f" (no limit allows it: max_json_depth is at most {MAX_JSON_DEPTH_CEILING})"


@dataclass_transform(frozen_default=True, field_specifiers=(Field,))
def command_model(cls: C) -> C:
    """Makes ``cls`` a frozen pydantic dataclass whose constructor refuses bad arguments with
    :class:`InvalidArgument` (never a pydantic ``ValidationError``)."""
    model: Any = pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))(cls)
    positional = [f.name for f in fields(model) if f.init and not f.kw_only]

    @functools.wraps(model.__init__)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        named = [*zip(positional, args, strict=False), *kwargs.items()]
        for name, value in named:  # a coarse first look: validation never meets an unbounded value
            raw_extent(
                name,
                value,
                max_depth=_RAW_DEPTH,
                max_size=_RAW_SIZE,
                max_items=_RAW_ITEMS,
                max_shared=_RAW_SHARED,
                why=_RAW_WHY,
            )
        try:  # strict all the way down: "5", True or 5.0 is not an int, bytes not a str
            type(self).__pydantic_validator__.validate_python(ArgsKwargs(args, kwargs), self_instance=self, strict=True)
        except ValidationError as exc:
            raise _refusal(type(self), exc, args, kwargs) from None
        except RecursionError:
            raise InvalidArgument("arguments", "<too deeply nested>", "is nested too deep") from None
        if not isinstance(self, Command):  # a command's part (AckItem): its command measures it
            return
        measures = tuple(self.measure())
        CEILING.check(measures)
        object.__setattr__(self, "_measures", measures)
        if self.now is not None:
            self.check_at(self.now)

    model.__init__ = __init__
    return cast(C, model)


_BOUNDED_STRINGS: dict[type[Any], list[tuple[str, str]]] = {}


def _bounded_strings(cls: type[Any]) -> list[tuple[str, str]]:
    """The command's identifier and free-text fields, with the limit bounding each."""
    if cls in _BOUNDED_STRINGS:
        return _BOUNDED_STRINGS[cls]
    found = []
    for name, info in cls.__pydantic_fields__.items():
        metadata = list(info.metadata)
        for arg in get_args(info.annotation):
            metadata.extend(getattr(arg, "__metadata__", ()))
        funcs = {getattr(m, "func", None) for m in metadata if isinstance(m, AfterValidator)}
        if _identifier in funcs:
            found.append((name, "max_id_chars"))
        elif _text in funcs:
            found.append((name, "max_text_chars"))
    _BOUNDED_STRINGS[cls] = found
    return found


_NOT_DIGESTED = frozenset({"now", "idempotency_key"})


@command_model
class Command(Generic[R]):
    """Base of every command. ``now`` is the command's time in milliseconds (the service's clock
    when omitted); ``idempotency_key`` makes a retry with the same arguments return the first
    result and write nothing."""

    name: ClassVar[str]
    """The command's stable name: the idempotency table records it, so it never changes."""
    result_type: ClassVar[Any]
    """The type of the command's result (stored as JSON under an idempotency key)."""
    not_digested: ClassVar[frozenset[str]] = frozenset()
    """Arguments the idempotency digest leaves out on purpose (besides ``now`` and the key)."""

    _: KW_ONLY
    now: Millis | None = None
    idempotency_key: Id | None = None

    @property
    def measures(self) -> tuple[Measure, ...]:
        """The command's bounded quantities, measured when it was built (see ``Limits.check``)."""
        measured = self.__dict__.get("_measures")
        if measured is None:  # built without __init__ (a copy, a validator): measure now
            measured = tuple(self.measure())
            CEILING.check(measured)
            object.__setattr__(self, "_measures", measured)
        return cast(tuple[Measure, ...], measured)

    def measure(self) -> Iterator[Measure]:
        """Measures the bounded arguments (refusing what no limit could allow); commands with JSON
        fields, messages or tickets add theirs."""
        for name, limit in _bounded_strings(type(self)):
            value = getattr(self, name)
            if isinstance(value, str):
                yield measure_chars(name, value, limit)

    def check_at(self, now: int) -> None:
        """Refuses the command at ``now`` when a time it derives would pass the latest time."""

    def params(self) -> dict[str, Any]:
        """The digested arguments as JSON values, by name."""
        dumped = _dump(self)
        skip = _NOT_DIGESTED | self.not_digested
        return {f.name: dumped[f.name] for f in fields(cast(Any, self)) if f.name not in skip}

    def digest(self) -> str:
        """SHA-256 of the command's name and its digested arguments as canonical JSON: the same
        command issued again (at another ``now``) has the same digest."""
        text = json.dumps(
            {"command": self.name, "params": self.params()},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return hashlib.sha256(text.encode()).hexdigest()


_ADAPTERS: dict[type[Any], TypeAdapter[Any]] = {}


def _dump(command: Any) -> dict[str, Any]:
    cls = type(command)
    adapter = _ADAPTERS.get(cls)
    if adapter is None:
        adapter = _ADAPTERS[cls] = TypeAdapter(cls)
    return cast(dict[str, Any], adapter.dump_python(command, mode="json"))
