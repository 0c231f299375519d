"""How the Postgres recorder turns database failures into the mailbox's typed errors.

The policy is the library's own (eventsourcing 9.5.6 retries its reads and inserts on
``InterfaceError``/``OperationalError``, 10 attempts, 0.2 s apart), with two changes:

- a **timeout** (``lock_timeout``, ``statement_timeout``, ``idle_in_transaction_session_timeout``)
  is not retried: the transaction was rolled back, and the caller gets :class:`StoreTimeout`
  at once instead of ten more waits on the same lock;
- after a connection failure the pool is checked (its broken connections are discarded, so a
  restarted server does not use up the attempts on dead sockets), and when the attempts are
  used up the caller gets :class:`StoreUnavailable` with the last reason, not a raw error;
- when the pool waited its whole timeout (``POSTGRES_CONNECT_TIMEOUT``) without a connection and a
  direct connection fails too, :class:`StoreUnavailable` comes at once, with the server's reason.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import psycopg.errors
import psycopg_pool
from eventsourcing.persistence import InterfaceError, InternalError, OperationalError
from eventsourcing.postgres import PostgresDatastore

from run_mailbox.domain.errors import StoreTimeout, StoreUnavailable

T = TypeVar("T")

RETRY_ATTEMPTS = 10
RETRY_WAIT_S = 0.2

# SQLSTATEs of the three timeouts: lock_not_available, query_canceled (statement_timeout),
# idle_in_transaction_session_timeout.
_TIMEOUT_STATES = {"55P03", "57014", "25P03"}


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def reason(exc: BaseException) -> str:
    """The first line of the database's own message (the driver's, under the library's wrapper)."""
    for cause in _chain(exc):
        if isinstance(cause, psycopg.Error):
            text = str(cause).strip()
            return text.splitlines()[0] if text else type(cause).__name__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_timeout(exc: BaseException) -> bool:
    for cause in _chain(exc):
        if not isinstance(cause, psycopg.Error):
            continue
        state = cause.sqlstate or ""
        if state == "57014" and "statement timeout" not in str(cause):
            continue  # a cancel by request (pg_cancel_backend) is not a timeout
        if state in _TIMEOUT_STATES or "idle-in-transaction timeout" in str(cause):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """A failure of the connection or the server that a new attempt may not see."""
    return isinstance(exc, InterfaceError | OperationalError | psycopg.OperationalError | psycopg.InterfaceError)


def call_store(
    operation: str,
    attempt: Callable[[], T],
    *,
    on_transient: Callable[[], Any] | None = None,
    diagnose: Callable[[], str | None] | None = None,
    attempts: int = RETRY_ATTEMPTS,
    wait_s: float = RETRY_WAIT_S,
) -> T:
    """``attempt()`` under the store's retry policy; raises StoreTimeout or StoreUnavailable."""
    checked = False
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except (InterfaceError, OperationalError, InternalError, psycopg.Error) as exc:
            if is_timeout(exc):
                raise StoreTimeout(operation, reason(exc)) from exc
            if not is_transient(exc):
                raise
            # The pool waited its whole timeout for a connection: if a direct one fails too, the
            # server is refusing us now, and nine more waits would only delay the same answer.
            waited = any(isinstance(cause, psycopg_pool.PoolTimeout) for cause in _chain(exc))
            if number == attempts or waited:
                found = _quietly(diagnose) if diagnose is not None else None
                if number == attempts or found:
                    why = f"{reason(exc)}; {found}" if found else reason(exc)
                    raise StoreUnavailable(operation, f"{why} (after {number} attempts)") from exc
            if on_transient is not None and not checked:  # once per call: a check may grow the pool by one
                _quietly(on_transient)
                checked = True
            time.sleep(wait_s * (1 + 0.1 * (random.random() - 0.5)))  # jitter, as the library's
    raise AssertionError("unreachable")  # pragma: no cover


def _quietly(func: Callable[[], Any]) -> Any:
    try:
        return func()
    except Exception:  # a diagnosis or a pool check must not hide the store's error
        return None


def scrub(text: str, secret: str | None) -> str:
    """``text`` without the password (libpq does not echo it, but a message must never carry it)."""
    return text.replace(secret, "***") if secret else text


class StorePolicy:
    """The retry policy bound to one datastore: its pool is checked after a connection failure, and a
    direct connection with its settings explains a pool that has no connection to give."""

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore

    def call(self, operation: str, attempt: Callable[[], T]) -> T:
        return call_store(operation, attempt, on_transient=self.datastore.pool.check, diagnose=self.diagnose)

    def diagnose(self) -> str | None:
        settings = self.datastore.pool.kwargs
        settings = settings() if callable(settings) else settings
        kwargs = {k: v for k, v in (settings or {}).items() if k != "row_factory"}
        try:
            psycopg.connect(**kwargs, connect_timeout=3).close()
        except psycopg.Error as exc:
            return "connecting directly: " + scrub(reason(exc), kwargs.get("password"))
        return None
