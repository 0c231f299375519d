"""What the aggregate cache keeps: records as JSON in tuples the garbage collector does not track,
read back equal to what was put, each caller given an object of its own; a long record kept as its
object; an entry that does not parse back a miss."""

from __future__ import annotations

import gc
import logging

from run_mailbox.domain.ids import dispatch_aggregate_id, mailbox_aggregate_id, run_aggregate_id
from run_mailbox.infrastructure.aggregate_cache import COMPACT_MAX, AggregateCache


def _claimed_lifecycle(service):
    service.submit("t1", "r1")
    claimed = service.claim("t1", consumer_id="w", lease_ms=30_000, start=True)
    return claimed, [run_aggregate_id("r1"), dispatch_aggregate_id(claimed.dispatch_id), mailbox_aggregate_id("t1")]


def test_each_kind_of_aggregate_reads_back_from_the_cache_as_it_was_committed(memory_service):
    """A run, a dispatch and a mailbox taken from the cache equal what the store replays, in version,
    timestamps and record; every take is a new aggregate object."""
    _, ids = _claimed_lifecycle(memory_service)
    for aggregate_id in ids:
        cached = memory_service.cache.take(aggregate_id)
        replayed = memory_service.unsnapshotted.get(aggregate_id)
        assert cached is not None
        assert type(cached) is type(replayed)
        assert (cached.id, cached.version, cached.created_on, cached.modified_on) == (
            replayed.id,
            replayed.version,
            replayed.created_on,
            replayed.modified_on,
        )
        assert cached.record == replayed.record
        again = memory_service.cache.take(aggregate_id)
        assert again is not cached and again.record is not cached.record


def test_the_cache_holds_nothing_the_garbage_collector_tracks(memory_service):
    """After a collection, no entry of a cache of a hundred threads' aggregates is tracked by the
    collector: a full collection does not walk them."""
    for n in range(100):
        memory_service.submit(f"t{n}", f"r{n}")
    entries = list(memory_service.cache._entries.items())
    assert len(entries) == 300
    gc.collect()
    assert not any(gc.is_tracked(key) or gc.is_tracked(entry) for key, entry in entries)


def test_a_record_longer_than_the_compact_limit_is_kept_as_its_object(memory_service):
    """A record whose JSON is longer than COMPACT_MAX is cached as the object itself and read back as it."""
    _, (run_id, _, _) = _claimed_lifecycle(memory_service)
    run = memory_service.cache.take(run_id)
    long_record = run.record.model_copy(update={"error": "e" * (COMPACT_MAX + 1)})
    run.record = long_record
    cache = AggregateCache()
    cache.put(run)
    assert cache._entries[run_id.int][2] is long_record
    assert cache.take(run_id).record is long_record


def test_an_entry_that_does_not_parse_back_is_a_miss_and_is_dropped(memory_service, caplog):
    """A cached record whose JSON no longer validates is not handed out: the take is a miss, the entry
    goes, and a warning names the aggregate."""
    _, (run_id, _, _) = _claimed_lifecycle(memory_service)
    cache = memory_service.cache
    kind, version, _, created_on, modified_on = cache._entries[run_id.int]
    cache._entries[run_id.int] = (kind, version, b'{"not": "a run"}', created_on, modified_on)
    with caplog.at_level(logging.WARNING, logger="run_mailbox.infrastructure.aggregate_cache"):
        assert cache.take(run_id) is None
    assert run_id.int not in cache._entries
    assert str(run_id) in caplog.text
    assert memory_service.get_run("r1").run_id == "r1"  # read from the store instead


def test_a_record_that_cannot_be_encoded_is_kept_as_its_object(memory_service):
    """Putting happens after the commit, so it must not raise: a record the serializer refuses (a lone
    surrogate, which no command accepts) is cached as the object itself."""
    _, (run_id, _, _) = _claimed_lifecycle(memory_service)
    run = memory_service.cache.take(run_id)
    odd_record = run.record.model_construct(**{**dict(run.record), "error": "\ud800"})
    run.record = odd_record
    cache = AggregateCache()
    cache.put(run)
    assert cache.take(run_id).record is odd_record
