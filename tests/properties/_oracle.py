"""What each command must do, predicted from the model before it runs.

``PREDICT[command](model, now, kwargs)`` returns an ``Expect`` (see ``_expect``): the exact
refusal type or none, whether the command must write events, and a check of the result that
runs after the model has been refreshed from the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.properties import _oracle_batches as b
from tests.properties import _oracle_dispatch as d
from tests.properties import _oracle_owner as o
from tests.properties import _oracle_redrive as rd
from tests.properties import _oracle_runs as r
from tests.properties._expect import RUN_FINISHED_FIRST, Expect, conflict, returns
from tests.properties._model import Model

__all__ = ["PREDICT", "RUN_FINISHED_FIRST", "Expect", "conflict", "returns"]

PREDICT: dict[str, Callable[[Model, int, dict[str, Any]], Expect]] = {
    f.__name__: f
    for f in (
        d.submit,
        b.submit_many,
        b.ack_many,
        b.redrive_many,
        d.claim,
        d.claim_next,
        d.claim_dispatch,
        o.extend_lease,
        o.record_start,
        o.ack,
        o.nack,
        o.dead_letter,
        d.cancel,
        d.interrupt,
        d.reclaim_expired_leases,
        r.suspend,
        r.decide,
        r.finish_run,
        r.commit_messages,
        r.repair_checkpoints,
        rd.redrive,
    )
}
