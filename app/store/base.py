"""The storage interface. The store is the system of record; the faiss index is rebuilt from it."""

from collections.abc import Iterator
from datetime import datetime
from typing import Protocol

import numpy as np

from app.errors import ImageExists
from app.models import ImageRecord, NewImage


class ImageStore(Protocol):
    """Durable image records. Implementations: SQLiteImageStore, MemoryImageStore.

    Keys are integers assigned by the store; they only grow and are never reused, even after a
    delete, so the index can use them as ids. Every write is all or nothing.
    """

    def add(self, images: list[NewImage]) -> list[ImageRecord]:
        """Store new images in one transaction and return them in the given order.

        Raises ImageExists if an id is already stored, or appears twice in `images`; then nothing
        is stored.
        """
        ...

    def replace(self, image: NewImage) -> tuple[ImageRecord, ImageRecord | None]:
        """Store `image` under its id, replacing any record there, in one transaction.

        The new record gets a new key. Returns the new record and the one it replaced, or None.
        """
        ...

    def get(self, image_id: str) -> ImageRecord | None:
        """The record with this id, or None."""
        ...

    def get_by_keys(self, keys: list[int]) -> dict[int, ImageRecord]:
        """The records with these keys; keys with no record are left out."""
        ...

    def delete(self, image_id: str) -> ImageRecord | None:
        """Delete the record with this id and return it; None (and no change) if there is none."""
        ...

    def page(self, *, limit: int, after: str | None) -> list[ImageRecord]:
        """Up to `limit` records in id order, starting after the id `after` (from the start if None)."""
        ...

    def iter_hashes(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every (keys int64, dhashes uint64) pair of arrays, in batches of at most `batch_size`."""
        ...

    def count(self) -> int:
        """Number of stored records."""
        ...

    def close(self) -> None:
        """Release the store's resources; later calls are errors."""
        ...


def refuse_repeated_ids(images: list[NewImage]) -> None:
    """Raise ImageExists naming every id that appears more than once in `images`."""
    seen: set[str] = set()
    repeated = []
    for image in images:
        if image.id in seen:
            repeated.append(image.id)
        seen.add(image.id)
    if repeated:
        raise ImageExists(repeated)


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds and a Z, the form every store returns."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
