"""How much a worker claims (``run_mailbox.worker.claims.free_slots``), over every state it can be in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from run_mailbox.worker.claims import free_slots


@st.composite
def worker_states(draw: st.DrawFn) -> tuple[int, int, int]:
    """(concurrency, held, reporting) that a worker claiming only its free slots can reach."""
    concurrency = draw(st.integers(1, 100))
    reporting = draw(st.integers(0, concurrency))
    running = draw(st.integers(0, concurrency))
    return concurrency, running + reporting, reporting


@given(worker_states())
def test_claiming_the_free_slots_never_runs_more_than_concurrency_nor_holds_more_than_twice_it(state):
    """After claiming what ``free_slots`` allows (each claimed dispatch starts running), at most
    ``concurrency`` handlers run and at most twice ``concurrency`` dispatches are held."""
    concurrency, held, reporting = state
    free = free_slots(concurrency, held, reporting)
    assert free >= 0
    assert held - reporting + free <= concurrency
    assert held + free <= 2 * concurrency


@given(worker_states())
def test_the_free_slots_are_all_the_room_both_bounds_leave(state):
    """``free_slots`` is the most the worker can claim within both bounds: one dispatch more would run
    more than ``concurrency`` handlers or hold more than twice ``concurrency``."""
    concurrency, held, reporting = state
    more = free_slots(concurrency, held, reporting) + 1
    assert held - reporting + more > concurrency or held + more > 2 * concurrency


def test_a_worker_whose_handlers_all_ended_claims_a_whole_batch_while_their_outcomes_are_written():
    assert free_slots(10, held=10, reporting=10) == 10
    assert free_slots(10, held=20, reporting=10) == 0  # and then waits for those writes
    assert free_slots(10, held=10, reporting=0) == 0  # ten handlers running: no slot
