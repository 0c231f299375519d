"""Waking an idle worker when new work may be ready: LISTEN on the events table's channel (Postgres).

Every write to a Postgres mailbox NOTIFYs the channel of its events table (``recorder.channel_name``),
in the write's own transaction, so the notification arrives when the write commits. The listener
holds one connection of its own (not one of the service's pool), LISTENs, and sets the worker's
wake-up event for every notification; the worker then tries to claim. A lost connection is opened
again after a pause, and the worker is woken once it listens again (notifications may have been
missed meanwhile); the worker's periodic poll covers the gap. Other backends have no notifications: the worker polls.

Notifications carry no payload and the channel's name does not include the schema, so a worker
also wakes for writes of other mailboxes in the same database (and for its own): each costs one
claim attempt that finds nothing, an index read that writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeGuard

import psycopg
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.sql import SQL, Identifier

log = logging.getLogger("run_mailbox.worker")
RECONNECT_S = (0.1, 0.5, 1.0, 2.0, 5.0)
CONNECT_TIMEOUT_S = 5


def listens(recorder: Any) -> TypeGuard[PostgresApplicationRecorder]:
    """Whether the store announces its writes (Postgres)."""
    return isinstance(recorder, PostgresApplicationRecorder)


class Listener:
    """LISTENs on the recorder's channel and calls ``wake`` for every notification, until cancelled.
    ``ready`` is set once the first LISTEN is in place (or it failed: ``error`` says why)."""

    def __init__(self, recorder: PostgresApplicationRecorder, wake: Callable[[], None]) -> None:
        self.channel = recorder.channel_name
        given = recorder.datastore.pool.kwargs
        kwargs = dict((given() if callable(given) else given) or {})
        kwargs.pop("row_factory", None)
        self.connect_kwargs = {**kwargs, "connect_timeout": CONNECT_TIMEOUT_S}
        self.wake = wake
        self.ready = asyncio.Event()
        self.error: BaseException | None = None
        self.notifications = 0

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._listen()
            except (psycopg.Error, OSError) as exc:
                failures = 0 if self.error is None else failures + 1  # the first failure after a good LISTEN
                self.error = exc
                self.ready.set()
                pause = RECONNECT_S[min(failures, len(RECONNECT_S) - 1)]
                log.warning("LISTEN %s lost (%s); again in %.1f s, polling meanwhile", self.channel, exc, pause)
                await asyncio.sleep(pause)

    async def _listen(self) -> None:
        connection = await psycopg.AsyncConnection.connect(autocommit=True, **self.connect_kwargs)
        try:
            await connection.execute(SQL("LISTEN {}").format(Identifier(self.channel)))
            if self.error is not None:
                self.wake()  # listening again: what was written meanwhile was announced to no one
            self.error = None
            self.ready.set()
            async for _ in connection.notifies():
                self.notifications += 1
                self.wake()
        finally:
            await connection.close()
