"""Doppel's use cases: index, replace, delete and search images. Knows nothing of HTTP."""

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from app.errors import BatchRejected, DoppelError, ImageExists, ImageNotFound, ImageTooLarge, InvalidInput, ItemFault
from app.hashing import ImageHashes, hamming, hash_image_bytes
from app.index import HammingIndex
from app.models import FileItem, HashItem, ImageRecord, Match, Metadata, NewImage, Page
from app.store import ImageStore
from app.validation import check_image_id, check_metadata, new_image_id, parse_hash, parse_metadata

REBUILD_BATCH = 100_000
DEFAULT_LIMIT = 100  # matches returned when the caller sets no limit


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
        new = self._new_image(upload, image_id=self._id_or_new(image_id), metadata=metadata)
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

    def add_hashes(self, items: list[HashItem]) -> list[ImageRecord]:
        """Store images known by their dHash alone, in one transaction, all or nothing.

        Raises BatchRejected naming every refused item (bad hash, id or metadata; an id given
        twice or already stored); then nothing is stored.
        """
        indexed: list[tuple[int, NewImage]] = []
        faults: list[ItemFault] = []
        for index, item in enumerate(items):
            try:
                new = NewImage(
                    id=self._id_or_new(item.id),
                    dhash=parse_hash(item.hash),
                    width=None,
                    height=None,
                    metadata=check_metadata(item.metadata),
                )
                indexed.append((index, new))
            except DoppelError as exc:
                faults.append(ItemFault(index, item.id, exc))
        return self._store_batch(indexed, faults)

    def add_files(
        self, files: list[FileItem], *, max_file_bytes: int, max_distance: int | None = None
    ) -> list[tuple[ImageRecord, list[Match]]]:
        """Store uploaded files in one transaction, all or nothing, each with its matches among
        the images stored before it, the earlier files of the batch included.

        The files are hashed on every core at once. Raises BatchRejected naming every refused
        file (over `max_file_bytes`, not an image, damaged, bad id or metadata, id taken).
        """
        indexed: list[tuple[int, NewImage]] = []
        faults: list[ItemFault] = []
        with ThreadPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1) or 1) as pool:
            # Pillow and numpy release the GIL while they decode and resize, so threads use every core.
            hashing = [pool.submit(self._hash_file, item.data, max_file_bytes) for item in files]
            for index, (item, hashed) in enumerate(zip(files, hashing, strict=True)):
                try:
                    upload = hashed.result()  # raises the file's hashing error
                    new = self._new_image(upload, image_id=self._id_or_new(item.id), metadata=parse_metadata(item.metadata))
                    indexed.append((index, new))
                except DoppelError as exc:
                    faults.append(ItemFault(index, item.id, exc))
        distance = self.max_distance if max_distance is None else max_distance
        earlier = [self.search_hash(new.dhash, max_distance=distance) for _, new in indexed]
        records = self._store_batch(indexed, faults)
        results = []
        for n, record in enumerate(records):
            in_batch = [Match(other, hamming(record.dhash, other.dhash)) for other in records[:n]]
            matches = earlier[n] + [m for m in in_batch if m.distance <= distance]
            matches.sort(key=lambda m: (m.distance, m.record.id))
            results.append((record, matches[:DEFAULT_LIMIT]))
        return results

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

    def _hash_file(self, data: bytes, max_bytes: int) -> Upload:
        if len(data) > max_bytes:
            raise ImageTooLarge(f"the file is over the upload limit of {max_bytes} bytes")
        return self.hash_upload(data)

    def _store_batch(self, indexed: list[tuple[int, NewImage]], faults: list[ItemFault]) -> list[ImageRecord]:
        """Store the images of a batch (store first, then index), or raise BatchRejected."""
        self._refuse(faults + _repeated_ids(indexed))
        try:
            records = self.store.add([new for _, new in indexed])
        except ImageExists as exc:
            taken = set(exc.image_ids)
            self._refuse([ItemFault(i, new.id, ImageExists([new.id])) for i, new in indexed if new.id in taken])
            raise
        self.index.add([r.key for r in records], [r.dhash for r in records])
        return records

    @staticmethod
    def _refuse(faults: list[ItemFault]) -> None:
        if faults:
            raise BatchRejected(sorted(faults, key=lambda fault: fault.index))

    @staticmethod
    def _id_or_new(image_id: str | None) -> str:
        """The client's id, checked, or a new one when the client gave none."""
        return new_image_id() if image_id is None else check_image_id(image_id)

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


def _repeated_ids(indexed: list[tuple[int, NewImage]]) -> list[ItemFault]:
    """A fault for every item whose id an earlier item of the same batch already has."""
    first: dict[str, int] = {}
    faults = []
    for index, new in indexed:
        if new.id in first:
            faults.append(ItemFault(index, new.id, InvalidInput(f"id {new.id!r} is also given to item {first[new.id]}")))
        else:
            first[new.id] = index
    return faults
