"""Hypothesis profiles of the property suite, and the per-test share of the profile's examples.

- ``ci``: derandomized (the same examples on every run), a fixed number of examples sized so the
  whole property suite takes about two minutes on two cores; loaded by default when ``CI`` is set.
- ``dev``: random, fewer examples; the default otherwise.
- ``long``: many random examples and longer programs, for a nightly run:
  ``pytest --hypothesis-profile=long tests/properties``.

Each test asks for a share of the profile's ``max_examples`` (the memory state machine takes it
all, Postgres a small share), so one number scales the whole suite.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

SLOW_IS_NORMAL = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=600,
    deadline=None,
    print_blob=True,
    database=None,
    suppress_health_check=SLOW_IS_NORMAL,
)
settings.register_profile("dev", max_examples=100, deadline=None, print_blob=True, suppress_health_check=SLOW_IS_NORMAL)
settings.register_profile(
    "long",
    max_examples=4_000,
    stateful_step_count=100,
    deadline=None,
    print_blob=True,
    suppress_health_check=SLOW_IS_NORMAL,
)

# The mutation runs (tests/mutation/run.py): the same examples every time, no shrinking (a
# mutant only needs to fail, not to fail minimally), few enough examples for thousands of runs.
settings.register_profile(
    "mutation",
    derandomize=True,
    max_examples=80,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=SLOW_IS_NORMAL,
)


def default_profile() -> str:
    return "ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "dev"


def share(fraction: float, *, minimum: int = 3, **overrides: object) -> settings:
    """The current profile with ``fraction`` of its examples (at least ``minimum``)."""
    current = settings.default
    assert current is not None
    examples = max(minimum, round(current.max_examples * fraction))
    return settings(current, max_examples=examples, **overrides)  # type: ignore[arg-type]
