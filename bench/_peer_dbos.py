"""DBOS's approval round trip: start a workflow that waits in ``recv(topic)``, ``send`` it the
decision, wait for its result.

DBOS runs on its own database (``bench_dbos``), in a fresh ``dbos_system_schema`` per case, with
its defaults otherwise (LISTEN/NOTIFY on, the default pool). ``drivers`` threads each run their
own round trips; the workflows themselves run on DBOS's executor threads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from dbos import DBOS, DBOSConfig

from bench._common import timed_workers
from bench._peer_common import DBOS_DBNAME, Rate, ensure_database, fresh_schema, pg_url

TOPIC = "approval"
DECISION = {"approved": True}
WARM_UP = 5


@DBOS.workflow()
def wait_for_approval(topic: str) -> Any:
    return DBOS.recv(topic, timeout_seconds=60)


def round_trip() -> None:
    handle = DBOS.start_workflow(wait_for_approval, TOPIC)
    DBOS.send(handle.workflow_id, DECISION, TOPIC)
    if handle.get_result() != DECISION:
        raise RuntimeError(f"workflow {handle.workflow_id} did not receive the decision")


def config(schema: str) -> DBOSConfig:
    return {
        "name": "run-mailbox-peers",
        "system_database_url": pg_url(DBOS_DBNAME),
        "dbos_system_schema": schema,
        "log_level": os.environ.get("BENCH_DBOS_LOG_LEVEL", "WARNING"),
    }


@contextmanager
def approval(drivers: int) -> Iterator[Callable[[int], Rate]]:
    """DBOS launched on a fresh system schema; yields ``round(round_trips)``: that many workflows,
    each started, sent its decision and awaited, by ``drivers`` threads."""
    ensure_database(DBOS_DBNAME)
    with fresh_schema("dbos", DBOS_DBNAME, create=False) as schema:  # DBOS's migrations create it
        DBOS(config=config(schema))
        try:
            DBOS.launch()
            for _ in range(WARM_UP):
                round_trip()

            def one_round(round_trips: int) -> Rate:
                shares = [list(range(w, round_trips, drivers)) for w in range(drivers)]
                return Rate(round_trips, timed_workers(shares, lambda _: round_trip()))

            yield one_round
        finally:
            DBOS.destroy()
