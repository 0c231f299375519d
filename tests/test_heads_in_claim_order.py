"""The in-memory recorder's ready heads in claim order give the candidates the definition gives (the best due
heads, then the threads due behind a delayed head), whatever heads were put, replaced and dropped; and a claim
looks at no more heads than it takes when the best ones are due."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from run_mailbox.infrastructure.persistence.ready_heads import HeadsInClaimOrder, ReadyHeadRow, claim_key

THREADS = [f"t{i}" for i in range(8)]


@st.composite
def heads(draw: st.DrawFn) -> ReadyHeadRow:
    available_at = draw(st.integers(0, 20))
    thread_id = draw(st.sampled_from(THREADS))
    return ReadyHeadRow(
        thread_id=thread_id,
        dispatch_id=draw(st.sampled_from(["d1", "d2", "d3"])) + thread_id,  # a dispatch is of one thread only
        priority=draw(st.integers(-1, 1)),
        created_at=draw(st.integers(0, 5)),
        available_at=available_at,
        next_available_at=draw(st.integers(0, available_at)),
    )


steps = st.lists(st.one_of(heads(), st.sampled_from(THREADS)), max_size=30)


def by_definition(current: dict[str, ReadyHeadRow], now: int, limit: int) -> list[ReadyHeadRow]:
    ordered = sorted(current.values(), key=claim_key)
    due = [h for h in ordered if h.available_at <= now][:limit]
    behind = [h for h in ordered if h.available_at > now and h.next_available_at <= now][:limit]
    return due + behind


@settings(max_examples=300, deadline=None)
@given(steps=steps, now=st.integers(0, 21), limit=st.integers(1, 4))
def test_candidates_are_the_best_due_heads_then_the_threads_due_behind_whatever_was_put_and_dropped(steps, now, limit):
    """Property: after any sequence of puts (a thread's head replaced) and drops, the candidates at ``now``
    are the ``limit`` best due heads in claim order, then the ``limit`` best threads whose head is not due
    but that have a due dispatch; ``heads()`` is every thread's current head."""
    order = HeadsInClaimOrder()
    current: dict[str, ReadyHeadRow] = {}
    for step in steps:
        if isinstance(step, ReadyHeadRow):
            order.put(step)
            current[step.thread_id] = step
        else:
            order.drop(step)
            current.pop(step, None)
    assert order.candidates(now, limit) == by_definition(current, now, limit)
    assert sorted(order.heads(), key=lambda h: h.thread_id) == sorted(current.values(), key=lambda h: h.thread_id)
    assert HeadsInClaimOrder(current.values()).candidates(now, limit) == by_definition(current, now, limit)


def test_a_claim_stops_after_the_heads_it_takes_when_the_best_are_due():
    """10,000 idle threads, all due: a claim of 3 walks 4 entries of the order (the fourth tells it to stop), not
    10,000."""
    order = HeadsInClaimOrder(
        ReadyHeadRow(f"t{i:05}", f"d{i:05}", 0, i, available_at=0, next_available_at=0) for i in range(10_000)
    )
    walked: list[object] = []

    class Walked(list):
        def __iter__(self):
            for entry in super().__iter__():
                walked.append(entry)
                yield entry

    order._order = Walked(order._order)
    assert [h.thread_id for h in order.candidates(now=5, limit=3)] == ["t00000", "t00001", "t00002"]
    assert len(walked) == 4
