"""View stores: in memory, in a SQLite file, in Postgres; all three honour ``projections.view.ViewStore``."""

from projections.stores.memory import MemoryViewStore
from projections.stores.postgres import PostgresViewStore
from projections.stores.sqlite import SQLiteViewStore
from projections.view import RebuildBehind, ViewStore

__all__ = ["MemoryViewStore", "PostgresViewStore", "RebuildBehind", "SQLiteViewStore", "ViewStore"]
