"""Image stores behind one interface (ImageStore); `open_store` picks the configured one."""

from app.config import Settings
from app.store.base import ImageStore
from app.store.memory import MemoryImageStore
from app.store.sqlite import SQLiteImageStore

__all__ = ["ImageStore", "MemoryImageStore", "SQLiteImageStore", "open_store"]


def open_store(settings: Settings) -> ImageStore:
    """The store the settings name: today the SQLite file in the data folder."""
    return SQLiteImageStore(settings.database_path)
