"""A worker claiming threads it has never seen: the candidates' mailboxes, head dispatches and their
runs come in one read, and what the claim reads but does not take cannot make it conflict."""

from __future__ import annotations

from typing import Any

import pytest

from run_mailbox import DispatchStatus, MailboxService, RunStatus
from tests.helpers import count_reads


@pytest.mark.postgres
@pytest.mark.parametrize("start", [False, True])
def test_a_cold_claim_reads_its_candidates_in_one_query(postgres_env, clock, start):
    producer = MailboxService(env=postgres_env, clock=clock)
    for n in range(3):
        producer.submit(f"t{n}", f"r{n}", priority=10 + n)
    worker = MailboxService(env=postgres_env, clock=clock)  # its cache holds none of it
    reads = count_reads(worker)
    (claimed,) = worker.claim_next(consumer_id="w", limit=1, start=start)
    # One query: 3 mailboxes and 3 head dispatches (limit 1 + 2 spare candidates), and their 3 runs to start one.
    assert (claimed.run_id, reads) == ("r0", [9 if start else 6])
    assert worker.get_run("r0").status is (RunStatus.RUNNING if start else RunStatus.CREATED)
    producer.close()
    worker.close()


def test_a_spare_candidate_changed_meanwhile_does_not_make_the_claim_conflict(pair):
    a, b = pair
    for n in range(3):
        a.submit(f"t{n}", f"r{n}", priority=10 + n)  # a's cache holds every mailbox, dispatch and run
    ready_threads = a.tables.ready_threads

    def and_meanwhile(now: int, limit: int, **kwargs: Any) -> Any:
        candidates = ready_threads(now, limit, **kwargs)
        b.claim("t1", consumer_id="other", start=True)  # a spare of a's claim: a's cached t1 is now stale
        return candidates

    a.tables.ready_threads = and_meanwhile
    retries = a.runner.retries
    (claimed,) = a.claim_next(consumer_id="w", limit=1, start=True)
    assert claimed.thread_id == "t0"
    assert a.runner.retries == retries, "the claim depended on a candidate it did not take"
    claimed_by = {t: [d.claimed_by for d in b.list_dispatches(t, status=DispatchStatus.CLAIMED)] for t in ("t0", "t1")}
    assert claimed_by == {"t0": ["w"], "t1": ["other"]}
