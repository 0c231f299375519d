"""The aggregate ids: ``ids.uuid5`` is the standard library's uuid5, only faster."""

from __future__ import annotations

import pickle
import uuid

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
