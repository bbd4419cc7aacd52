"""Doppel's use cases: index, replace, delete and search images. Knows nothing of HTTP."""

import hashlib
from dataclasses import dataclass

from app.errors import ImageNotFound
from app.hashing import ImageHashes, hash_image_bytes
from app.index import HammingIndex
from app.models import ImageRecord, Match, Metadata, NewImage, Page
from app.store import ImageStore
from app.validation import check_image_id, new_image_id

REBUILD_BATCH = 100_000


@dataclass(frozen=True, slots=True)
class Upload:
    """An uploaded file once hashed: its hashes and the SHA-256 of its bytes."""

    hashes: ImageHashes
    sha256: str


class DoppelService:
    """Images in the store (the system of record) and their hashes in the index (a cache of it).

    Writes go to the store first, then to the index; reads resolve index hits against the store,
    so a record deleted between the two steps is never returned.
    """

    def __init__(self, store: ImageStore, index: HammingIndex, *, max_distance: int, max_pixels: int) -> None:
        self.store = store
        self.index = index
        self.max_distance = max_distance
        self.max_pixels = max_pixels

    def rebuild_index(self) -> None:
        """Load every stored hash into the (empty) index."""
        for keys, hashes in self.store.iter_hashes(REBUILD_BATCH):
            self.index.add(keys, hashes)

    def hash_upload(self, data: bytes) -> Upload:
        """Hash an uploaded file; raises the hashing module's image errors."""
        return Upload(hash_image_bytes(data, max_pixels=self.max_pixels), hashlib.sha256(data).hexdigest())

    def add(
        self, data: bytes, *, image_id: str | None, metadata: Metadata, max_distance: int | None = None
    ) -> tuple[ImageRecord, list[Match]]:
        """Store a new image; also return its matches among the images stored before it."""
        upload = self.hash_upload(data)
        new = self._new_image(upload, image_id=check_image_id(image_id) if image_id is not None else new_image_id(), metadata=metadata)
        duplicates = self.search_hash(upload.hashes.dhash, max_distance=max_distance)
        (record,) = self.store.add([new])
        self.index.add([record.key], [record.dhash])
        return record, duplicates

    def put(
        self, image_id: str, data: bytes, *, metadata: Metadata
    ) -> tuple[ImageRecord, bool, list[Match]]:
        """Create or replace the image under `image_id`. Returns (record, created, duplicates),
        the duplicates being the other stored images that match it."""
        upload = self.hash_upload(data)
        new = self._new_image(upload, image_id=check_image_id(image_id), metadata=metadata)
        record, old = self.store.replace(new)
        if old is not None:
            self.index.remove([old.key])
        self.index.add([record.key], [record.dhash])
        duplicates = self.search_hash(record.dhash, exclude_key=record.key)
        return record, old is None, duplicates

    def get(self, image_id: str) -> ImageRecord:
        record = self.store.get(image_id)
        if record is None:
            raise ImageNotFound(image_id)
        return record

    def delete(self, image_id: str) -> None:
        record = self.store.delete(image_id)
        if record is None:
            raise ImageNotFound(image_id)
        self.index.remove([record.key])

    def page(self, *, limit: int, after: str | None) -> Page:
        """A page of records in id order; `next` is the cursor for the following page."""
        items = self.store.page(limit=limit + 1, after=after)
        has_more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next=items[-1].id if has_more else None)

    def search(self, data: bytes, *, max_distance: int | None = None, limit: int = 100) -> tuple[int, list[Match]]:
        """The query file's dHash and the stored images within `max_distance` of it."""
        dhash = self.hash_upload(data).hashes.dhash
        return dhash, self.search_hash(dhash, max_distance=max_distance, limit=limit)

    def duplicates_of(self, image_id: str, *, max_distance: int | None = None, limit: int = 100) -> list[Match]:
        """The stored images that match a stored one, itself left out."""
        record = self.get(image_id)
        return self.search_hash(record.dhash, max_distance=max_distance, limit=limit, exclude_key=record.key)

    def search_hash(
        self, dhash: int, *, max_distance: int | None = None, limit: int = 100, exclude_key: int | None = None
    ) -> list[Match]:
        """Stored images within `max_distance` bits of `dhash`, nearest first, ties by id."""
        distance = self.max_distance if max_distance is None else max_distance
        (hits,) = self.index.search([dhash], max_distance=distance)
        hits = [(key, d) for key, d in hits if key != exclude_key]
        return self._resolve(hits, limit)

    def count(self) -> int:
        return len(self.index)

    def _resolve(self, hits: list[tuple[int, int]], limit: int) -> list[Match]:
        """Turn (key, distance) hits into the first `limit` matches ordered by (distance, id)."""
        hits.sort(key=lambda hit: hit[1])
        if len(hits) > limit:
            # Only the hits up to the distance of the limit-th one can be in the result; the ties
            # at that distance are ordered by id, so all of them are fetched.
            cutoff = hits[limit - 1][1]
            hits = [hit for hit in hits if hit[1] <= cutoff]
        records = self.store.get_by_keys([key for key, _ in hits])
        matches = [Match(records[key], d) for key, d in hits if key in records]
        matches.sort(key=lambda m: (m.distance, m.record.id))
        return matches[:limit]

    @staticmethod
    def _new_image(upload: Upload, *, image_id: str, metadata: Metadata) -> NewImage:
        return NewImage(
            id=image_id,
            dhash=upload.hashes.dhash,
            width=upload.hashes.width,
            height=upload.hashes.height,
            metadata=metadata,
            dhash_vertical=upload.hashes.dhash_vertical,
            sha256=upload.sha256,
        )
