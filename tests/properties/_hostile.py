"""Arguments for every command, valid and hostile: ids and text with NUL, lone surrogates, padding
and past their length; times at 0 and at the latest; leases and limits past their bounds; bools
and strings for ints; JSON nested to 100,000 levels, past every size limit, with NaN, sets,
tuples, bytes, complex numbers, 64-bit overflows and keys that are not clean strings; messages,
tickets and decisions of every shape; unknown and missing arguments.

A drawn call is ``(command, kwargs)`` whose values may be :class:`Ref` placeholders for the
example's own world (its queued dispatch, its claimed one and its token, its waiting run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from run_mailbox.domain.limits import KiB, MiB
from run_mailbox.domain.values import MAX_MILLIS


@dataclass(frozen=True)
class Ref:
    """A value of the example's world, by name: ``dq`` (queued dispatch), ``dc`` (claimed, started),
    ``dw`` (acked, its run waiting), ``token``, threads ``tq tc tw tn``, runs ``rq rc rw rn``."""

    name: str


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


BAD_TEXT = ["", "  ", " x", "a\x00b", "a\ud800b", "\udfff", "\n", 17, None, b"x", True]
BAD_IDS = [*BAD_TEXT, "x" * 257, "d\t1", "d\x7f"]
GOOD_IDS = ["x" * 256, "é✓-ok"]


def mostly(valid: Any, bad: Any, odds: int = 8) -> st.SearchStrategy[Any]:
    """About ``odds`` valid draws to one bad one; lists are sampled from."""
    good = st.sampled_from(valid) if isinstance(valid, list) else valid
    hostile = st.sampled_from(bad) if isinstance(bad, list) else bad
    return st.sampled_from([True] * odds + [False]).flatmap(lambda ok: good if ok else hostile)


def ids(*refs: str, fresh: list[str] = ()) -> st.SearchStrategy[Any]:  # type: ignore[assignment]
    return mostly([Ref(name) for name in refs] + list(fresh), [*BAD_IDS, *GOOD_IDS])


EDGE_TIMES = [0, 1, MAX_MILLIS - 30_000, MAX_MILLIS - 1, MAX_MILLIS]
BAD_TIMES = [MAX_MILLIS + 1, -1, 2**63, True, 1.5, "5"]
NOW = mostly(st.one_of(st.none(), st.none(), st.sampled_from([10_000, *EDGE_TIMES])), BAD_TIMES)
TIME = mostly([10_000, 20_000, *EDGE_TIMES], BAD_TIMES)
OPTIONAL_TIME = mostly(st.one_of(st.none(), st.sampled_from([10_000, 20_000, *EDGE_TIMES])), BAD_TIMES)
LEASES = mostly([1, 50, 30_000, 86_400_000], [0, -1, 86_400_001, 2**62, True, "50", 30_000.0])
PRIORITIES = mostly([0, 128, 255], [-1, 256, True, "5", 5.0])
ATTEMPTS = mostly([1, 5, 1_000], [0, 1_001, True])
LIMITS = mostly([1, 2, 10, 10_000], [0, 10_001, True, -1])
ERRORS = mostly(["boom", "x" * 16_384, "é"], ["x" * 16_385, *BAD_TEXT])
KEYS = mostly([None, None, None, "k1"], ["", "k\x00", 5])
SEQS = mostly([None, 1, 2, 2**62], [0, 2**62 + 1, True, -1])

# ---------------------------------------------------------------------- JSON

HOSTILE_LEAVES = [
    math.nan,
    math.inf,
    -math.inf,
    2**63,
    -(2**63) - 1,
    {1, 2},
    (1, 2),
    b"bytes",
    1 + 2j,
    "a\x00b",
    "\ud800",
    object(),
]
HOSTILE_KEYS = [1, ("a", 1), "k\x00", "k\udc80", None]
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON = st.recursive(
    LEAVES,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=4),
    max_leaves=10,
)
DEPTHS = [1, 10, 61, 64, 65, 128, 129, 200, 201, 1_000, 100_000]
SIZES = [100, 64 * KiB - 20, 64 * KiB + 1, MiB - 100, MiB + 1, 16 * MiB + 1]


def _with_hostile(value: Any, bad: Any, as_key: bool) -> Any:
    return {"ok": value, "inner": [{bad: 1}] if as_key else [0, {"bad": bad}]}


JSON_VALUES = mostly(
    JSON,
    st.one_of(
        st.sampled_from(DEPTHS).map(nested),
        st.sampled_from(SIZES).map(lambda n: {"blob": "x" * n}),
        st.builds(_with_hostile, JSON, st.sampled_from(HOSTILE_LEAVES), st.just(False)),
        st.builds(_with_hostile, JSON, st.sampled_from(HOSTILE_KEYS), st.just(True)),
        st.sampled_from(HOSTILE_LEAVES),
    ),
    odds=3,
)

# ---------------------------------------------------------------------- messages, tickets, decisions

STRINGS = mostly(
    st.text(max_size=12), st.one_of(st.sampled_from(BAD_TEXT), st.sampled_from(SIZES).map(lambda n: "x" * n))
)
SOURCE = mostly(
    st.one_of(
        st.fixed_dictionaries({"type": st.just("url"), "url": STRINGS}),
        st.fixed_dictionaries({"type": st.just("base64"), "media_type": STRINGS, "data": STRINGS}),
    ),
    [{"type": "ftp"}, "nothing"],
)


def blocks(depth: int = 2) -> st.SearchStrategy[Any]:
    simple = [
        st.fixed_dictionaries({"type": st.just("text"), "text": STRINGS}),
        st.fixed_dictionaries({"type": st.just("thinking"), "thinking": STRINGS}),
        st.fixed_dictionaries({"type": st.sampled_from(["image", "audio", "video"]), "source": SOURCE}),
        st.fixed_dictionaries({"type": st.just("document"), "source": SOURCE}, optional={"title": STRINGS}),
        st.fixed_dictionaries({"type": st.just("tool_use"), "id": STRINGS, "name": STRINGS, "input": JSON_VALUES}),
    ]
    if depth > 0:
        inner = st.lists(blocks(depth - 1), max_size=2)
        simple.append(st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": STRINGS, "content": inner}))
    return mostly(st.one_of(*simple), [{"type": "bogus"}, "not a block"])


MESSAGE = st.fixed_dictionaries(
    {
        "message_id": mostly(["m1", "m2", "m3"], BAD_IDS),
        "role": mostly(["user", "assistant", "system", "tool"], ["robot"]),
        "content": st.lists(blocks(), max_size=3),
    },
    optional={"visibility": mostly(["all", "internal"], ["secret"]), "created_at": OPTIONAL_TIME},
)


def _many_messages(count: int, size: int) -> list[dict[str, Any]]:
    return [
        {"message_id": f"m{i}", "role": "user", "content": [{"type": "text", "text": "x" * size}]} for i in range(count)
    ]


MESSAGES = mostly(
    st.lists(MESSAGE, min_size=1, max_size=3),
    st.one_of(
        st.sampled_from(["str", {"message_id": "m1"}, None, 5, []]),
        st.sampled_from([(1_001, 1), (1_000, 1), (1, MiB - 200), (4, MiB - 200), (5, MiB - 200)]).map(
            lambda p: _many_messages(*p)
        ),
    ),
    odds=4,
)

TICKET = st.fixed_dictionaries(
    {"tool_call_id": mostly(["c1", "c2", "c3"], BAD_IDS), "tool_name": mostly(["shell"], BAD_IDS)},
    optional={"arguments": JSON_VALUES},
)


def _many_tickets(count: int) -> list[dict[str, Any]]:
    return [{"tool_call_id": f"c{i}", "tool_name": "t", "arguments": {"i": i}} for i in range(count)]


TICKETS = mostly(
    st.lists(TICKET, min_size=1, max_size=3, unique_by=lambda ticket: str(ticket["tool_call_id"])),
    st.one_of(
        st.sampled_from(["str", {"tool_call_id": "c1"}, None, []]),
        st.sampled_from([100, 101]).map(_many_tickets),
        st.sampled_from([(70, 60 * KiB)]).map(lambda p: [{**t, "arguments": "x" * p[1]} for t in _many_tickets(p[0])]),
    ),
    odds=4,
)
RESUME = mostly(
    st.fixed_dictionaries(
        {"decision_id": mostly(["x1", "x2"], BAD_IDS), "action": mostly(["resume", "cancel"], ["x"])},
        optional={"result": JSON_VALUES, "reason": st.one_of(STRINGS, st.none()), "updated_at": TIME},
    ),
    ["resume", None, 5],
)
TERMINATION = mostly(
    st.fixed_dictionaries(
        {"type": mostly(["natural_end", "stopped", "cancelled", "blocked", "error"], ["suspended", "bogus"])},
        optional={"value": JSON_VALUES},
    ),
    ["stopped", None],
)
MISSING = st.dictionaries(mostly([1, 2, 3], [0, -1, 2**62 + 1, True, "1"]), mostly(["m1", "m2"], BAD_IDS), max_size=3)
