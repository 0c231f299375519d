"""Fail fast, with the server's own reason, when the Postgres store cannot be used.

Without this check a missing database (or a server that refuses us) made the library's pool
retry in the background for ``POSTGRES_CONNECT_TIMEOUT`` (30 s by default) and then raise
"couldn't get a connection after 30.00 sec", losing the cause. One direct connection, with the
same settings, says at once what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

import psycopg
from eventsourcing.utils import Environment, resolve_topic

from run_mailbox.domain.errors import StoreUnavailable
from run_mailbox.infrastructure.persistence.pg_errors import reason, scrub
from run_mailbox.infrastructure.settings import SettingsError, describe, postgres_conninfo

DEFAULT_CONNECT_TIMEOUT_S = 5


def _password(env: Mapping[str, str]) -> str | None:
    topic = env.get("POSTGRES_GET_PASSWORD_TOPIC")
    if topic:
        password: str = resolve_topic(topic)()
        return password
    return env.get("POSTGRES_PASSWORD") or None


def preflight(env: Mapping[str, str]) -> None:
    """Connects once: StoreUnavailable names the database and the server's reason, SettingsError a
    schema that is missing or needs quoting. ``env`` is read like the library reads it (an
    ``eventsourcing.utils.Environment`` resolves the application-prefixed keys)."""
    password = _password(env)
    settings = Environment(getattr(env, "name", ""), dict(env))
    for key in settings.create_keys("POSTGRES_PASSWORD"):
        settings[key] = password or ""
    conninfo = postgres_conninfo(settings)
    text = env.get("POSTGRES_CONNECT_TIMEOUT") or str(DEFAULT_CONNECT_TIMEOUT_S)
    try:
        timeout = int(text)
    except ValueError:
        raise SettingsError(f"invalid POSTGRES_CONNECT_TIMEOUT={text!r}: expected whole seconds") from None
    where = describe(env)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=max(1, timeout)) as conn:
            schema = (env.get("POSTGRES_SCHEMA") or "").strip() or "public"
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s), quote_ident(%s)", [schema, schema]
            ).fetchone()
    except psycopg.Error as exc:
        raise StoreUnavailable("connect", f"cannot use {where}: {scrub(reason(exc), password)}") from None
    assert row is not None
    exists, quoted = row
    if quoted != schema:
        raise SettingsError(f"invalid POSTGRES_SCHEMA={schema!r}: it is an SQL keyword and would need quoting")
    if not exists:
        raise SettingsError(
            f"schema {schema!r} does not exist in {where}: create it (CREATE SCHEMA {schema}) or fix POSTGRES_SCHEMA"
        )
