"""A submit to a thread the service has not seen takes the thread to be new and does not read it
first. When the thread exists after all (another service made it, or this one forgot it), the write
conflicts and the submit runs again on a read: it then answers exactly as a service that knew the
thread would have."""

from __future__ import annotations

import pytest

from run_mailbox import DedupeKeyConflict, DispatchStatus, DuplicateRun, MailboxService
from run_mailbox.domain import StoreTimeout
from tests.helpers import count_reads, hold_events_lock


@pytest.mark.postgres
def test_a_submit_to_a_new_thread_reads_nothing_and_commits_first_time(postgres_env, clock):
    service = MailboxService(env=postgres_env, clock=clock)
    reads = count_reads(service)
    record = service.submit("new-thread", "r1")
    assert (reads, service.runner.retries, service.runner.transactions) == ([], 0, 1)
    assert service.get_dispatch(record.dispatch_id).status is DispatchStatus.QUEUED
    service.close()


@pytest.mark.postgres
def test_a_submit_to_a_thread_another_service_made_reads_it_once_after_the_conflict(postgres_env, clock):
    maker = MailboxService(env=postgres_env, clock=clock)
    maker.submit("t", "r1")
    other = MailboxService(env=postgres_env, clock=clock)  # its cache holds none of it
    reads = count_reads(other)
    other.submit("t", "r2")
    # The first try's write is refused; the retry reads the run, its dispatch and the mailbox in one query.
    assert (reads, other.runner.retries, other.runner.transactions) == ([3], 1, 1)
    maker.close()
    other.close()


@pytest.mark.postgres
def test_a_service_without_a_cache_reads_the_thread_first_and_never_guesses(postgres_env, clock):
    """It remembers no thread, so presuming each one new would be wrong for every thread's second run."""
    maker = MailboxService(env=postgres_env, clock=clock)
    maker.submit("t", "r1")
    uncached = MailboxService(env=postgres_env, clock=clock, cache_size=0)
    reads = count_reads(uncached)
    uncached.submit("t", "r2")
    uncached.submit("new-thread", "r3")
    assert (reads, uncached.runner.retries) == ([1, 1], 0)
    maker.close()
    uncached.close()


@pytest.mark.postgres
def test_the_wrong_guess_is_refused_before_the_events_lock(postgres_env, postgres_url, clock):
    """With another session holding the events table's lock, the first try's write is still refused at
    once (its probe takes no lock) and only the retry's write waits, until the lock timeout."""
    maker = MailboxService(env=postgres_env, clock=clock)
    maker.submit("t", "r1")
    other = MailboxService(env={**postgres_env, "MAILBOX_LOCK_TIMEOUT_MS": "300"}, clock=clock)
    with hold_events_lock(postgres_url, postgres_env["POSTGRES_SCHEMA"]), pytest.raises(StoreTimeout):
        other.submit("t", "r2")  # the lock is held until the block ends
    assert other.runner.retries == 1, "the first write waited for the lock instead of being refused before it"
    assert [d.run_id for d in maker.list_dispatches("t")] == ["r1"]
    maker.close()
    other.close()


def test_a_submit_to_a_thread_another_service_made_queues_behind_what_is_there(pair):
    a, b = pair
    first = a.submit("t", "r1", priority=5)
    second = b.submit("t", "r2", priority=5)
    assert b.runner.retries == 1, "b took the thread to be new, its write conflicted, the retry read it"
    assert [d.dispatch_id for d in b.list_dispatches("t")] == [first.dispatch_id, second.dispatch_id]
    claimed = b.claim("t", consumer_id="w")
    assert claimed is not None and claimed.run_id == "r1"
    assert a.claim("t", consumer_id="w") is None, "the thread is busy with r1"


@pytest.mark.parametrize(
    ("second", "error"),
    [
        ({"run_id": "r2", "dedupe_key": "turn-1"}, DedupeKeyConflict),
        ({"run_id": "r1"}, DuplicateRun),
    ],
    ids=["dedupe key held", "run id taken"],
)
def test_a_refused_submit_to_a_thread_made_elsewhere_is_refused_as_on_the_service_that_made_it(pair, second, error):
    """The presumed-new mailbox holds no dedupe key and the first try does not look the run up: the
    refusal must come from the stored thread, word for word as the service that knew it gives it."""
    a, b = pair
    first = a.submit("t", "r1", dedupe_key="turn-1")
    with pytest.raises(error) as warm:
        a.submit("t", **second)
    with pytest.raises(error) as cold:
        b.submit("t", **second)
    assert str(cold.value) == str(warm.value)
    assert [d.dispatch_id for d in b.list_dispatches("t")] == [first.dispatch_id]
