"""In-memory store: the fake behind the same interface, for tests and throw-away runs."""

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import numpy as np

from app.errors import ImageExists
from app.models import ImageRecord, NewImage
from app.store.base import Changes, StoredHashes, Wake, format_time, refuse_repeated_ids
from app.store.columns import pack_cuts, signed


class MemoryImageStore:
    """ImageStore kept in dicts, for one process; nothing survives it."""

    def __init__(self) -> None:
        self.identity = secrets.token_hex(16)
        self.migrated_from: int | None = None  # nothing to migrate: nothing is kept
        self._by_id: dict[str, ImageRecord] = {}
        self._by_key: dict[int, ImageRecord] = {}
        self._tombstones: dict[int, int] = {}  # position -> removed key
        self._thumbnails: dict[int, bytes] = {}  # key -> WebP
        self._head = 0
        # The write lock is held by a write block from start to end; the data lock, briefly, by
        # every read and write of the dicts (a reader never waits for a whole write block).
        self._write_lock = threading.Lock()
        self._lock = threading.Lock()

    @contextmanager
    def writing(self) -> Iterator["_MemoryWrite"]:
        with self._write_lock:
            write = _MemoryWrite(self)
            try:
                yield write
            except BaseException:
                with self._lock:
                    write.undo()
                raise
            self._head = write.position

    def head(self) -> int:
        return self._head

    def changes(self, after: int, upto: int) -> Changes:
        with self._lock:
            added = [r for key, r in self._by_key.items() if after < key <= upto]
            removed = [key for position, key in self._tombstones.items() if after < position <= upto]
        added.sort(key=lambda r: r.key)
        return Changes(_hashes(added), np.array(removed, dtype=np.int64))

    def iter_hashes(self, batch_size: int, *, upto: int) -> Iterator[StoredHashes]:
        with self._lock:
            records = sorted((r for r in self._by_key.values() if r.key <= upto), key=lambda r: r.key)
        for start in range(0, len(records), batch_size):
            yield _hashes(records[start : start + batch_size])

    def get(self, image_id: str) -> ImageRecord | None:
        return self._by_id.get(image_id)

    def get_by_keys(self, keys: list[int]) -> dict[int, ImageRecord]:
        with self._lock:
            return {key: self._by_key[key] for key in keys if key in self._by_key}

    def thumbnail(self, image_id: str) -> bytes | None:
        with self._lock:
            record = self._by_id.get(image_id)
            return None if record is None else self._thumbnails.get(record.key)

    def page(self, *, limit: int, after: str | None) -> list[ImageRecord]:
        with self._lock:
            ids = sorted(i for i in self._by_id if after is None or i > after)[:limit]
            return [self._by_id[i] for i in ids]

    def count(self) -> int:
        return len(self._by_id)

    def size_bytes(self) -> int:
        return 0

    def count_older(self, hashing_version: int) -> int:
        with self._lock:
            return sum(1 for r in self._by_key.values() if r.hashing_version < hashing_version)

    def older(self, hashing_version: int, *, after_key: int, limit: int) -> list[ImageRecord]:
        with self._lock:
            found = [
                r for r in self._by_key.values() if r.key > after_key and r.hashing_version < hashing_version
            ]
        return sorted(found, key=lambda r: r.key)[:limit]

    def on_change(self, wake: Wake) -> None:
        """One process: its own writes wake its index."""

    def describe(self) -> str:
        return "memory (nothing is kept)"

    def close(self) -> None:
        with self._lock:
            self._by_id.clear()
            self._by_key.clear()
            self._tombstones.clear()
            self._thumbnails.clear()


class _MemoryWrite:
    """WriteTransaction over the dicts; `undo` reverts its writes when the block raises."""

    def __init__(self, store: MemoryImageStore) -> None:
        self._store = store
        self.head = store._head
        self.position = store._head
        self._added: list[ImageRecord] = []
        self._removed: list[tuple[ImageRecord, bytes | None]] = []

    def add(self, images: list[NewImage]) -> list[ImageRecord]:
        refuse_repeated_ids(images)
        with self._store._lock:
            taken = [image.id for image in images if image.id in self._store._by_id]
            if taken:
                raise ImageExists(taken)
            return [self._insert(image) for image in images]

    def replace(self, image: NewImage) -> tuple[ImageRecord, ImageRecord | None]:
        old = self.delete(image.id)
        with self._store._lock:
            return self._insert(image), old

    def delete(self, image_id: str) -> ImageRecord | None:
        with self._store._lock:
            record = self._store._by_id.pop(image_id, None)
            if record is not None:
                del self._store._by_key[record.key]
                self.position += 1
                self._store._tombstones[self.position] = record.key
                self._removed.append((record, self._store._thumbnails.pop(record.key, None)))
        return record

    def undo(self) -> None:
        for record in self._added:
            self._store._by_id.pop(record.id, None)
            self._store._by_key.pop(record.key, None)
            self._store._thumbnails.pop(record.key, None)
        for record, thumbnail in self._removed:
            self._store._by_id[record.id] = record
            self._store._by_key[record.key] = record
            if thumbnail is not None:
                self._store._thumbnails[record.key] = thumbnail
        for position in range(self.head + 1, self.position + 1):
            self._store._tombstones.pop(position, None)

    def _insert(self, image: NewImage) -> ImageRecord:
        self.position += 1
        record = ImageRecord(
            key=self.position,
            id=image.id,
            dhash=image.dhash,
            width=image.width,
            height=image.height,
            created_at=image.created_at or format_time(datetime.now(UTC)),
            metadata=dict(image.metadata),
            dhash_vertical=image.dhash_vertical,
            dct_hash=image.dct_hash,
            centre_dhash=image.centre_dhash,
            centre_vertical=image.centre_vertical,
            centre_dct=image.centre_dct,
            cuts=image.cuts,
            sha256=image.sha256,
            hashing_version=image.hashing_version,
        )
        self._store._by_id[image.id] = record
        self._store._by_key[record.key] = record
        if image.thumbnail:
            self._store._thumbnails[record.key] = image.thumbnail
        self._added.append(record)
        return record


def _hashes(records: list[ImageRecord]) -> StoredHashes:
    return StoredHashes.of(
        [
            (
                r.key,
                signed(r.dhash),
                r.centre_dhash is not None,
                signed(r.centre_dhash or 0),
                r.dct_hash is not None,
                signed(r.dct_hash or 0),
            )
            for r in records
        ],
        [(r.key, packed) for r in records if (packed := pack_cuts(r.cuts))],
    )
