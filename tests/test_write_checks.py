"""The write's own checks, on every backend: the versions of the aggregates a command only read
(``read_versions``) and the aggregates it presumed new without reading them (``presumed_new``).

A check that fails refuses the whole write as a conflict (``IntegrityError``, which makes the command
run again on fresh reads) and leaves the store as it was; one that holds lets the write through."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from run_mailbox.domain.ids import mailbox_aggregate_id
from run_mailbox.domain.mailbox import ThreadMailbox
from run_mailbox.infrastructure.service import MailboxService


def opened(thread_id: str) -> ThreadMailbox:
    return ThreadMailbox.open_for(thread_id=thread_id, now=1_000)


def log_of(service: MailboxService) -> list[tuple[UUID, int]]:
    return [(n.originator_id, n.originator_version) for n in service.recorder.select_notifications(start=1, limit=100)]


def save_refused(service: MailboxService, *aggregates: Any, **kwargs: Any) -> None:
    before = log_of(service)
    with pytest.raises(IntegrityError):
        service.save(*aggregates, **kwargs)
    assert log_of(service) == before


@pytest.fixture
def stored(service: MailboxService) -> ThreadMailbox:
    """A mailbox in the store at version 1."""
    mailbox = opened("stored")
    service.save(mailbox)
    return mailbox


def test_a_write_whose_read_aggregate_is_at_the_version_read_goes_through(
    service: MailboxService, stored: ThreadMailbox
) -> None:
    service.save(opened("other"), read_versions={stored.id: 1})
    assert mailbox_aggregate_id("other") in {i for i, _ in log_of(service)}


def test_a_read_of_an_aggregate_with_no_events_is_version_zero(service: MailboxService, stored: ThreadMailbox) -> None:
    service.save(opened("other"), read_versions={mailbox_aggregate_id("never-written"): 0, stored.id: 1})
    assert len(log_of(service)) == 2


@pytest.mark.parametrize("read_at", [0, 2, 7])
def test_a_write_whose_read_aggregate_moved_on_or_is_ahead_is_refused(
    service: MailboxService, stored: ThreadMailbox, read_at: int
) -> None:
    save_refused(service, opened("other"), read_versions={stored.id: read_at})


def test_one_stale_read_among_several_refuses_the_write(service: MailboxService, stored: ThreadMailbox) -> None:
    fresh = opened("fresh")
    service.save(fresh)
    save_refused(service, opened("other"), read_versions={fresh.id: 1, stored.id: 0})


def test_a_write_that_presumed_a_stored_aggregate_new_is_refused(
    service: MailboxService, stored: ThreadMailbox
) -> None:
    again = opened("stored")
    save_refused(service, again, opened("other"), presumed_new=[again.id])


def test_a_write_that_presumed_new_aggregates_which_are_new_goes_through(
    service: MailboxService, stored: ThreadMailbox
) -> None:
    first, second = opened("a"), opened("b")
    service.save(first, second, presumed_new=[first.id, second.id])
    assert {first.id, second.id} <= {i for i, _ in log_of(service)}
