"""The thread mailbox on its own: a new thread's mailbox opens with its first dispatch, in one event."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from run_mailbox.domain.ids import mailbox_aggregate_id
from run_mailbox.domain.mailbox import Admission, ThreadMailbox
from run_mailbox.infrastructure.service import MailboxService

admissions = st.builds(
    Admission.of,
    st.text(min_size=1, max_size=8),
    priority=st.integers(0, 255),
    created_at=st.integers(0, 10**12),
    available_at=st.integers(0, 10**12),
    dedupe_key=st.none() | st.text(min_size=1, max_size=8),
)


@given(admission=admissions, now=st.integers(0, 10**12))
def test_opening_with_a_dispatch_folds_to_what_opening_then_admitting_did(admission: Admission, now: int):
    """One event, ``MailboxOpened`` with ``admitted``, leaves the record that ``MailboxOpened`` then
    ``DispatchAdmitted`` left (the two events a new thread's submit wrote before version 3)."""
    one = ThreadMailbox.open_admitting(thread_id="t", admission=admission, now=now)
    two = ThreadMailbox.open_for(thread_id="t", now=now)
    two.admit(admission, now=now)
    assert [type(e).__name__ for e in one.collect_events()] == ["MailboxOpened"]
    assert [type(e).__name__ for e in two.collect_events()] == ["MailboxOpened", "DispatchAdmitted"]
    assert one.record == two.record
    assert one.record.open == {admission.dispatch_id: admission.entry}


def test_a_submit_opens_a_new_threads_mailbox_in_one_event_and_admits_the_next_in_another():
    service = MailboxService()
    first = service.submit("t", "r1", now=1)
    second = service.submit("t", "r2", now=2)
    events = service.repository.event_store.get(mailbox_aggregate_id("t"))
    kinds = [(type(e).__name__, getattr(e, "admitted", None) and e.admitted.dispatch_id) for e in events]
    assert kinds == [("MailboxOpened", first.dispatch_id), ("DispatchAdmitted", None)]
    mailbox = service.repository.get(mailbox_aggregate_id("t"))
    assert list(mailbox.record.open) == [first.dispatch_id, second.dispatch_id]
    assert mailbox.record.dispatch_count == 2


def test_a_mailbox_opened_before_version_3_reads_back_with_nothing_admitted():
    service = MailboxService()
    service.submit("t", "r1", now=1)
    stored = service.recorder.select_events(mailbox_aggregate_id("t"))[0]
    assert stored.state.startswith(b'{"v":3,')
    body = stored.state.replace(b'{"v":3,', b'{"v":2,', 1)
    cut = body.index(b',"admitted":')
    old = type(stored)(stored.originator_id, 1, stored.topic, body[:cut] + b"}")
    opened = service.mapper.to_domain_event(old)
    assert opened.admitted is None and opened.thread_id == "t"
