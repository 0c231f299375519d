"""The ``last_error`` texts the mailbox writes when it supersedes or dead-letters a dispatch
(spec payloads section 9): a reader of the log can tell from them how it happened."""

from __future__ import annotations

SUPERSEDED_BY_INTERRUPT = "queued dispatch superseded by interrupt"
RUN_FINISHED_FIRST = "queued dispatch superseded: its run finished first"
LEASE_EXHAUSTED = "lease expired; max attempts reached"

# A claimed dispatch fenced on its owner's next write after an interrupt, by the command that wrote.
FENCED_AT = {
    "extend_lease": "claimed dispatch superseded during lease renewal",
    "record_start": "claimed dispatch superseded before runtime start",
    "ack": "claimed dispatch superseded by newer dispatch epoch",
    "nack": "claimed dispatch superseded before nack",
    "dead_letter": "claimed dispatch superseded before dead letter",
    "suspend": "claimed dispatch superseded before suspend",
    "reclaim": "claimed dispatch lease expired after interrupt",
}
