"""Image stores behind one interface (ImageStore); `open_store` opens the configured one."""

from app.config import Settings
from app.store.base import Changes, ImageStore, WriteTransaction
from app.store.memory import MemoryImageStore
from app.store.sqlite import SQLiteImageStore

__all__ = ["Changes", "ImageStore", "MemoryImageStore", "SQLiteImageStore", "WriteTransaction", "open_store"]


def open_store(settings: Settings) -> ImageStore:
    """The store DOPPEL_DATABASE_URL names: a SQLite file (by default in the data folder) or PostgreSQL."""
    path = settings.database_path
    if path is not None:
        return SQLiteImageStore(path)
    from app.store.postgres import PostgresImageStore  # psycopg is loaded only when it is used

    assert settings.database_url is not None
    return PostgresImageStore(settings.database_url)
