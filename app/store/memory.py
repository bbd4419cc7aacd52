"""In-memory store: the fake behind the same interface, for tests and throw-away runs."""

import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np

from app.errors import ImageExists
from app.models import ImageRecord, NewImage
from app.store.base import format_time, refuse_repeated_ids


class MemoryImageStore:
    """ImageStore kept in dicts; nothing survives the process."""

    def __init__(self) -> None:
        self._by_id: dict[str, ImageRecord] = {}
        self._key_to_id: dict[int, str] = {}
        self._last_key = 0
        self._lock = threading.Lock()

    def add(self, images: list[NewImage]) -> list[ImageRecord]:
        refuse_repeated_ids(images)
        with self._lock:
            taken = [image.id for image in images if image.id in self._by_id]
            if taken:
                raise ImageExists(taken)
            return [self._insert(image) for image in images]

    def replace(self, image: NewImage) -> tuple[ImageRecord, ImageRecord | None]:
        with self._lock:
            old = self._pop(image.id)
            return self._insert(image), old

    def get(self, image_id: str) -> ImageRecord | None:
        return self._by_id.get(image_id)

    def get_by_keys(self, keys: list[int]) -> dict[int, ImageRecord]:
        with self._lock:
            return {key: self._by_id[self._key_to_id[key]] for key in keys if key in self._key_to_id}

    def delete(self, image_id: str) -> ImageRecord | None:
        with self._lock:
            return self._pop(image_id)

    def page(self, *, limit: int, after: str | None) -> list[ImageRecord]:
        with self._lock:
            ids = sorted(i for i in self._by_id if after is None or i > after)[:limit]
            return [self._by_id[i] for i in ids]

    def iter_hashes(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        with self._lock:
            records = sorted(self._by_id.values(), key=lambda r: r.key)
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            yield (
                np.array([r.key for r in batch], dtype=np.int64),
                np.array([r.dhash for r in batch], dtype=np.uint64),
            )

    def count(self) -> int:
        return len(self._by_id)

    def close(self) -> None:
        self._by_id.clear()
        self._key_to_id.clear()

    def _pop(self, image_id: str) -> ImageRecord | None:
        record = self._by_id.pop(image_id, None)
        if record is not None:
            del self._key_to_id[record.key]
        return record

    def _insert(self, image: NewImage) -> ImageRecord:
        self._last_key += 1
        record = ImageRecord(
            key=self._last_key,
            id=image.id,
            dhash=image.dhash,
            width=image.width,
            height=image.height,
            created_at=format_time(datetime.now(UTC)),
            metadata=dict(image.metadata),
            dhash_vertical=image.dhash_vertical,
            dct_hash=image.dct_hash,
            sha256=image.sha256,
        )
        self._by_id[image.id] = record
        self._key_to_id[record.key] = image.id
        return record
