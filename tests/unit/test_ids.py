"""The aggregate ids: ``ids.uuid5`` is the standard library's uuid5, only faster."""

from __future__ import annotations

import itertools
import os
import pickle
import threading
import time
import uuid
from types import SimpleNamespace

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from run_mailbox.domain import ids

# hypothesis' text leaves surrogates out, and merges a union of character strategies into one that
# still does: the names are joined from characters of either kind, most of them holding a surrogate
NAMES = st.lists(st.one_of(st.characters(), st.characters(categories=["Cs"]))).map("".join)


@given(namespace=st.uuids(), name=NAMES)
@example(namespace=ids.NAMESPACE, name="thread:\ud800")
@example(namespace=ids.NAMESPACE, name="")
def test_uuid5_equals_the_standard_librarys_uuid5_for_every_name(namespace: uuid.UUID, name: str) -> None:
    """For any namespace and name (lone surrogates included), ``ids.uuid5`` gives the UUID ``uuid.uuid5``
    gives, or fails as it does: every stored aggregate id stays the same."""
    try:
        expected = uuid.uuid5(namespace, name)
    except UnicodeEncodeError:
        try:
            ids.uuid5(namespace, name)
        except UnicodeEncodeError:
            return
        raise AssertionError("ids.uuid5 accepted a name uuid.uuid5 refuses") from None
    made = ids.uuid5(namespace, name)
    assert made == expected
    assert (made.int, made.version, made.variant, str(made), hash(made)) == (
        expected.int,
        5,
        uuid.RFC_4122,
        str(expected),
        hash(expected),
    )


def test_a_fast_uuid5_behaves_as_a_uuid() -> None:
    made = ids.mailbox_aggregate_id("thread-1")
    assert made == uuid.uuid5(ids.NAMESPACE, "thread:thread-1")
    assert made.is_safe is uuid.SafeUUID.unknown
    assert pickle.loads(pickle.dumps(made)) == made
    assert {made: 1}[uuid.UUID(str(made))] == 1
    with pytest.raises(TypeError):  # as immutable as any UUID
        made.int = 0  # type: ignore[misc]


def _fields(made: str) -> tuple[int, int, int, int]:
    """An id's timestamp (ms), version, variant bits and its 74 random bits, from its string."""
    value = uuid.UUID(made).int
    rand = (((value >> 64) & 0xFFF) << 62) | (value & ((1 << 62) - 1))
    return value >> 80, (value >> 76) & 0xF, (value >> 62) & 0b11, rand


def _frozen_clock(monkeypatch: pytest.MonkeyPatch, readings: list[int]) -> None:
    """``ids.new_id`` reads ``readings`` (nanoseconds) one after another, from a process that has issued no
    id yet; the ids issued before come back afterwards, so later tests' ids stay on the real clock."""
    clock = iter(readings)
    monkeypatch.setattr(ids, "_issued", 0)
    monkeypatch.setattr(ids, "time", SimpleNamespace(time_ns=lambda: next(clock)))


def test_ids_issued_in_one_millisecond_sort_in_the_order_they_were_issued(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dispatches of equal priority and creation time are claimed in id order: ids of one millisecond
    come in the order they were issued, keep that millisecond and stay UUIDv7, with random steps."""
    _frozen_clock(monkeypatch, [1_700_000_000_123_456_789] * 2_000)
    made = [ids.new_id() for _ in range(2_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert {_fields(m)[:3] for m in made} == {(1_700_000_000_123, 7, 0b10)}
    steps = {_fields(b)[3] - _fields(a)[3] for a, b in itertools.pairwise(made)}
    assert min(steps) >= 1 and len(steps) > 1_000, "each step is random, so the next id is not the last plus one"


def test_ids_keep_rising_when_the_clock_steps_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock set back (NTP) never makes an id sort before one issued earlier."""
    _frozen_clock(monkeypatch, [5_000_000_000_000_000, 4_000_000_000_000_000, 4_999_999_000_000_000])
    made = [ids.new_id() for _ in range(3)]
    assert made == sorted(made) and len(set(made)) == 3
    assert _fields(made[2])[0] == 5_000_000_000, "the timestamp stays at the latest millisecond seen"


def test_ids_carry_the_clocks_millisecond_and_rise_across_threads() -> None:
    """On the real clock an id carries the millisecond it was made in, and ids made by several threads
    at once are all different, each thread's in the order it made them."""
    before = time.time_ns() // 1_000_000
    made = ids.new_id()
    assert before <= _fields(made)[0] <= time.time_ns() // 1_000_000
    results: list[list[str]] = [[] for _ in range(4)]

    def issue(mine: list[str]) -> None:
        mine.extend(ids.new_id() for _ in range(2_000))

    threads = [threading.Thread(target=issue, args=(mine,)) for mine in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(mine == sorted(mine) for mine in results)
    assert len({m for mine in results for m in mine}) == 8_000


def test_ids_rise_where_the_random_bits_carry_from_rand_b_into_rand_a(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 74 random bits are laid out as the 12 of ``rand_a`` and the 62 of ``rand_b``: an id whose step
    within a millisecond carries into ``rand_a`` still sorts after the one before it."""
    _frozen_clock(monkeypatch, [7_000_000_000_000_000] * 2)
    monkeypatch.setattr(ids, "os", SimpleNamespace(urandom=bytes))  # no entropy: each step is exactly one
    monkeypatch.setattr(ids, "_issued", (7_000_000_000 << 74) | ((1 << 62) - 2))
    below, above = ids.new_id(), ids.new_id()
    assert _fields(below)[3] == (1 << 62) - 1 and _fields(above)[3] == 1 << 62
    assert below < above


def test_a_forked_child_does_not_step_from_its_parents_last_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """Children forked from one parent in one millisecond would otherwise all step from the parent's last
    id, a few random steps apart: each child starts afresh (and with a lock no parent thread holds)."""
    monkeypatch.setattr(ids, "_issued", 123 << 74)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child process)
        os.write(write, str(ids._issued).encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert os.read(read, 100) == b"0" and ids._issued == 123 << 74
    os.close(read)
