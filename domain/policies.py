"""Numbers that shape the mailbox's behaviour: defaults, limits and the retry backoff."""

from __future__ import annotations

DEFAULT_PRIORITY = 128
"""0 is the highest priority, 255 the lowest."""
MAX_PRIORITY = 255

DEFAULT_MAX_ATTEMPTS = 5
MAX_MAX_ATTEMPTS = 1_000

DEFAULT_LEASE_MS = 30_000
MIN_LEASE_MS = 1
MAX_LEASE_MS = 24 * 60 * 60 * 1000
"""A lease longer than a day is a bug in the caller, not a long job."""

RETRY_BASE_MS = 250
RETRY_CAP_MS = 30_000

DEFAULT_RECLAIM_LIMIT = 100
MAX_BATCH_LIMIT = 10_000


def backoff_delay_ms(failures: int, *, base_ms: int = RETRY_BASE_MS, cap_ms: int = RETRY_CAP_MS) -> int:
    """Delay before the next attempt after the ``failures``-th failure (1-based).

    250 ms after the first failure, doubling each time, capped at 30 s: 250, 500, 1000,
    2000, ... (the upstream's off-by-one, which waited 250 ms twice, is fixed: spec Z4).
    """
    exponent = max(failures - 1, 0)
    if exponent >= 32:  # 2**32 * 250 ms is far past any cap; avoid huge integers
        return cap_ms
    return min(base_ms << exponent, cap_ms)
