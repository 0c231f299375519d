"""The ready heads vacuumed as the claims churn them, not only when autovacuum comes round.

The ready-heads table is the mailbox's queue: a claim deletes the claimed threads' head rows, and a
thread's next dispatch gets a row of its own once the claim is acked. Postgres leaves each old row
version in the table's indexes until VACUUM removes it, and they pile up where a claim's index scan
starts (the oldest heads), so every claim reads past all of them: with autovacuum off, a claim's
read of the heads went from 0.46 to 2.5 ms over 28,000 claimed threads (docs/performance.md,
"Claims after churn").
Autovacuum looks at a database at most once a minute (``autovacuum_naptime``), waits for a fifth
of a table to be dead, and some servers run with it off.

So the Postgres recorder counts the head rows its writes write or delete (two per dispatch, most
often: its row is written when it becomes its thread's head, and deleted when it is claimed) and
after every ``every`` of them (``MAILBOX_VACUUM_HEADS_EVERY``, default 2,000; 0 leaves the table to
autovacuum) runs ``VACUUM (SKIP_LOCKED)`` on it in a thread of its own, on a pooled
connection: no command waits for it, and one already running (this recorder's, or autovacuum's,
which SKIP_LOCKED steps aside for) is not doubled. VACUUM takes a lock that no read or write of the
mailbox conflicts with. The table holds one row per thread with queued work, so a vacuum is small;
on a big backlog it scans only the pages changed since the last one, and leaves the indexes alone
while few pages hold dead rows, as autovacuum does. A vacuum that fails (the store is gone, the
role does not own the table, the statement timeout) is logged and the count starts again: it is
housekeeping after writes that have committed.

What it cannot do is what autovacuum cannot either: remove rows a still-open transaction may see.
The dispatch index is left to autovacuum: the mailbox reads it by key, and its one range scan (the
lease sweep) starts at leases that have expired, not at old claims.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg
from eventsourcing.persistence import PersistenceError
from psycopg.sql import SQL

log = logging.getLogger("run_mailbox.store")

DEFAULT_EVERY = 2_000


class HeadsVacuum:
    """Counts the head rows writes changed; once they reach ``every``, ``vacuum`` runs in a thread."""

    def __init__(self, vacuum: Callable[[], None], every: int = DEFAULT_EVERY) -> None:
        self.every = every
        self.runs = 0
        self.failures = 0
        self._vacuum = vacuum
        self._changed = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def changed(self, rows: int) -> None:
        """Counts ``rows`` head rows written or deleted by a write that committed."""
        if self.every <= 0 or rows <= 0:
            return
        with self._lock:
            self._changed += rows
            if self._changed < self.every or (self._thread is not None and self._thread.is_alive()):
                return
            self._changed = 0
            self._thread = threading.Thread(target=self._run, name="run-mailbox heads vacuum", daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Waits for a running vacuum to end; False if it still runs after ``timeout`` seconds."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def _run(self) -> None:
        try:
            self._vacuum()
        except (psycopg.Error, PersistenceError) as exc:
            self.failures += 1
            log.warning("the vacuum of the ready heads failed (autovacuum is left to it): %s", exc)
        else:
            self.runs += 1


def vacuum_heads(recorder: Any) -> None:
    """``VACUUM (SKIP_LOCKED)`` of the recorder's ready heads, on one of its pooled connections."""
    statement = SQL("VACUUM (SKIP_LOCKED) {}").format(recorder.sql.heads_table)
    with recorder.datastore.get_connection() as conn:
        recorder._configure_session(conn)
        conn.execute(statement, prepare=False)
