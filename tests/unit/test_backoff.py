"""The retry backoff after a failed attempt (spec C82 as corrected by Z4)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from run_mailbox.domain.policies import RETRY_BASE_MS, RETRY_CAP_MS, backoff_delay_ms


def test_the_policy_waits_250_ms_at_first_and_at_most_30_seconds():
    """Spec C83: retry delay 250 ms, maximum retry delay 30000 ms."""
    assert (RETRY_BASE_MS, RETRY_CAP_MS) == (250, 30_000)


@pytest.mark.parametrize(
    ("failures", "delay"),
    [(1, 250), (2, 500), (3, 1_000), (4, 2_000), (5, 4_000), (6, 8_000), (7, 16_000), (8, 30_000), (9, 30_000)],
)
def test_the_delay_doubles_after_each_failure_from_250_ms(failures, delay):
    """Spec Z4 (fixing C82's off-by-one, which waited 250 ms twice): 250, 500, 1000, 2000, ..."""
    assert backoff_delay_ms(failures) == delay


@pytest.mark.parametrize("failures", [100, 1_000, 10**9])
def test_a_long_failure_streak_stays_at_the_cap(failures):
    """Spec C82: a high attempt count stays capped (and never builds a huge number)."""
    assert backoff_delay_ms(failures) == 30_000


def test_no_failure_yet_is_treated_as_the_first():
    """Spec C82: a zero attempt count gets the base delay."""
    assert backoff_delay_ms(0) == 250


def test_base_and_cap_are_parameters():
    """Spec C82: base 1000 with cap 5000 caps at 5000 from the fourth failure on."""
    assert [backoff_delay_ms(n, base_ms=1_000, cap_ms=5_000) for n in (1, 2, 3, 4, 7)] == [
        1_000,
        2_000,
        4_000,
        5_000,
        5_000,
    ]


@given(st.integers(min_value=0, max_value=10_000))
def test_backoff_is_monotone_non_decreasing_and_never_above_the_cap(failures):
    delay = backoff_delay_ms(failures)
    assert RETRY_BASE_MS <= delay <= RETRY_CAP_MS
    assert delay <= backoff_delay_ms(failures + 1)
