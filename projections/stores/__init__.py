"""View stores: in memory, in a SQLite file, in Postgres; all three honour ``projections.view.ViewStore``."""

from run_mailbox.projections.stores.memory import MemoryViewStore
from run_mailbox.projections.stores.postgres import PostgresViewStore
from run_mailbox.projections.stores.sqlite import SQLiteViewStore
from run_mailbox.projections.view import RebuildBehind, ViewStore

__all__ = ["MemoryViewStore", "PostgresViewStore", "RebuildBehind", "SQLiteViewStore", "ViewStore"]
