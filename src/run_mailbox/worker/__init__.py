"""The worker runtime: run your handler on the mailbox's dispatches, with leases kept alive.

    from run_mailbox import MailboxService
    from run_mailbox.worker import Job, PermanentError, Worker

    def handle(job: Job) -> None:
        ...  # run the agent; raise PermanentError when retrying cannot help

    Worker(MailboxService(env=...), handle, concurrency=8).run()  # until SIGTERM or Ctrl-C

See docs/worker.md: the handler contract, heartbeats, shutdown and wake-up.
"""

from run_mailbox.worker.contract import LeaseLost, NeedsPermission, PermanentError, Result
from run_mailbox.worker.job import AsyncHandler, Handler, Job, SyncHandler
from run_mailbox.worker.runtime import Worker

__all__ = [
    "AsyncHandler",
    "Handler",
    "Job",
    "LeaseLost",
    "NeedsPermission",
    "PermanentError",
    "Result",
    "SyncHandler",
    "Worker",
]
