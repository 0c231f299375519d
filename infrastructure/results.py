"""Immutable results of service commands that are not a single aggregate record."""

from __future__ import annotations

from domain.dispatch import DispatchRecord
from domain.values import Value


class InterruptResult(Value):
    thread_id: str
    new_dispatch_epoch: int
    superseded: list[DispatchRecord]
    active_dispatch: DispatchRecord | None

    @property
    def superseded_count(self) -> int:
        return len(self.superseded)
