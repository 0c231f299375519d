"""How much a worker claims: its free slots, and how long it pauses after a claim that failed."""

from __future__ import annotations

PAUSES_S = (0.1, 0.25, 0.5, 1.0, 2.0)
"""Pauses after a claim met store trouble, growing with each failure in a row."""


def free_slots(concurrency: int, held: int, reporting: int) -> int:
    """How many more dispatches a worker may claim, holding ``held`` attempts of which ``reporting`` have
    ended their handlers and wait for their outcomes' writes. A slot frees once its handler ends, so the
    next claim overlaps those writes; but no more than ``concurrency`` attempts wait for them (at most
    ``concurrency`` handlers run, and at most twice ``concurrency`` dispatches are held)."""
    running = held - reporting
    return max(0, min(concurrency - running, 2 * concurrency - held))
