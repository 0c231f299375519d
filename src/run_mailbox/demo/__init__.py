"""``mailbox demo``: the main job end to end, against a real store, checked against its own log.

A seeded plan submits a few runs on each of a few dozen threads; worker threads claim under
short leases, start, and then ack, nack, dead-letter or abandon each attempt by its seeded
fate; the driver interrupts a few threads part-way and submits fresh runs on some of them
(see :mod:`run_mailbox.demo.workers`). Some runs first ask for tool permissions, which a
simulated reviewer approves or denies, some decisions delivered twice (see
:mod:`run_mailbox.demo.reviewer`); runs checkpoint their messages as they go. When every
run is done the demo prints a summary and checks it against the event log: the canonical
events are counted by kind and compared with what the workers, the reviewer and the driver
did and with the dispatch index.
"""

from run_mailbox.demo.run import run_demo

__all__ = ["run_demo"]
