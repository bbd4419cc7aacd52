"""Doppel's use cases: index, replace, delete and search images. Knows nothing of HTTP."""

import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from app.errors import (
    BatchRejected,
    DoppelError,
    DuplicateImage,
    ImageExists,
    ImageNotFound,
    InvalidInput,
    ItemFault,
)
from app.hashing import ImageHashes, Signature, hamming, hash_image_bytes
from app.index import HammingIndex
from app.models import FileItem, HashItem, ImageRecord, Match, Metadata, NewImage, Orientation, Page
from app.orientation import variants_of_hashes, variants_of_image
from app.store import ImageStore
from app.validation import (
    check_file_size,
    check_image_id,
    check_metadata,
    new_image_id,
    parse_hash,
    parse_metadata,
)

REBUILD_BATCH = 100_000
RESOLVE_CHUNK = 256
ORIGINAL = Orientation.ORIGINAL


class OnDuplicate(StrEnum):
    """What POST /images does with a copy of a stored image."""

    ALLOW = "allow"  # store it and report the matches
    REJECT = "reject"  # refuse it when anything matches
    REJECT_EXACT = "reject_exact"  # refuse it only when the bytes are identical


@dataclass(frozen=True, slots=True)
class Upload:
    """An uploaded file once hashed: its hashes and the SHA-256 of its bytes."""

    hashes: ImageHashes
    sha256: str


@dataclass(frozen=True, slots=True)
class Query:
    """What a search looks for: the query's hashes per orientation, and its bytes' SHA-256."""

    variants: dict[Orientation, Signature]
    sha256: str | None


@dataclass(frozen=True, slots=True)
class SearchOptions:
    """How to search: threshold (None: the service default), how many, and which checks."""

    max_distance: int | None = None
    limit: int | None = 100  # None: every match
    confirm: bool = True
    all_orientations: bool = False


# Every stored image whose dHash equals the query's, unconfirmed: where identical files are.
EVERY_IDENTICAL_HASH = SearchOptions(max_distance=0, limit=None, confirm=False)


class DoppelService:
    """Images in the store (the system of record) and their hashes in the index (a cache of it).

    Writes go to the store first, then to the index; reads resolve index hits against the store,
    so a record deleted between the two steps is never returned.
    """

    def __init__(
        self,
        store: ImageStore,
        index: HammingIndex,
        *,
        max_distance: int,
        confirm_distance: int,
        max_pixels: int,
        max_concurrent_decodes: int,
    ) -> None:
        self.store = store
        self.index = index
        self.max_distance = max_distance
        self.confirm_distance = confirm_distance
        self.max_pixels = max_pixels
        # Request threads (up to 40) would otherwise all decode at once, each up to max_pixels.
        self._decode_slots = threading.BoundedSemaphore(max_concurrent_decodes)
        # Held while the store and the index change, so that the index always holds exactly the
        # stored keys (its size is the image count) and duplicate checks see every earlier write.
        self._write_lock = threading.Lock()

    def rebuild_index(self) -> None:
        """Load every stored hash into the (empty) index."""
        for keys, hashes in self.store.iter_hashes(REBUILD_BATCH):
            self.index.add(keys, hashes)

    def hash_upload(self, data: bytes) -> Upload:
        """Hash an uploaded file; raises the hashing module's image errors. Waits for a decode slot."""
        with self._decode_slots:
            hashes = hash_image_bytes(data, max_pixels=self.max_pixels)
        return Upload(hashes, hashlib.sha256(data).hexdigest())

    def add(
        self,
        data: bytes,
        *,
        image_id: str | None,
        metadata: Metadata,
        options: SearchOptions | None = None,
        on_duplicate: OnDuplicate = OnDuplicate.ALLOW,
    ) -> tuple[ImageRecord, list[Match]]:
        """Store a new image; also return its matches among the images stored before it.

        With `on_duplicate` REJECT (any match) or REJECT_EXACT (identical bytes) a copy raises
        DuplicateImage and nothing is stored.
        """
        upload = self.hash_upload(data)
        new = self._new_image(upload, image_id=self._id_or_new(image_id), metadata=metadata)
        options = options or SearchOptions()
        query = query_of_upload(upload, all_orientations=options.all_orientations)
        # Under the write lock: two copies sent at once cannot both pass the check.
        with self._write_lock:
            duplicates = self.find(query, options)
            if on_duplicate is OnDuplicate.REJECT and duplicates:
                raise DuplicateImage(duplicates)
            if on_duplicate is OnDuplicate.REJECT_EXACT:
                # Every identical file, not only those within `limit`: identical bytes decode
                # to the same pixels, so they are all at distance 0.
                exact = [m for m in self.find(query, EVERY_IDENTICAL_HASH) if m.exact]
                if exact:
                    raise DuplicateImage(exact)
            (record,) = self.store.add([new])  # store first: the index is a cache rebuilt from it
            self.index.add([record.key], [record.dhash])
        return record, duplicates

    def put(
        self, image_id: str, data: bytes, *, metadata: Metadata, options: SearchOptions | None = None
    ) -> tuple[ImageRecord, bool, list[Match]]:
        """Create or replace the image under `image_id`. Returns (record, created, duplicates),
        the duplicates being the other stored images that match it."""
        upload = self.hash_upload(data)
        new = self._new_image(upload, image_id=check_image_id(image_id), metadata=metadata)
        with self._write_lock:  # the store and the index change together
            record, old = self.store.replace(new)
            if old is not None:
                self.index.remove([old.key])
            self.index.add([record.key], [record.dhash])
        options = options or SearchOptions()
        query = query_of_upload(upload, all_orientations=options.all_orientations)
        duplicates = self.find(query, options, exclude_key=record.key)
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
        with self._write_lock:
            return self._store_batch(indexed, faults)

    def add_files(
        self, files: list[FileItem], *, max_file_bytes: int, options: SearchOptions | None = None
    ) -> list[tuple[ImageRecord, list[Match]]]:
        """Store uploaded files in one transaction, all or nothing, each with its matches among
        the images stored before it, the earlier files of the batch included.

        The files are hashed on every core at once. Raises BatchRejected naming every refused
        file (over `max_file_bytes`, not an image, damaged, bad id or metadata, id taken).
        """
        options = options or SearchOptions()
        indexed: list[tuple[int, NewImage]] = []
        queries: list[Query] = []
        faults: list[ItemFault] = []
        with ThreadPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1) or 1) as pool:
            # Pillow and numpy release the GIL while they decode and resize, so threads use every core.
            hashing = [pool.submit(self._hash_file, item.data, max_file_bytes) for item in files]
            for index, (item, hashed) in enumerate(zip(files, hashing, strict=True)):
                try:
                    upload = hashed.result()  # raises the file's hashing error
                    metadata = parse_metadata(item.metadata)
                    indexed.append(
                        (index, self._new_image(upload, image_id=self._id_or_new(item.id), metadata=metadata))
                    )
                    queries.append(query_of_upload(upload, all_orientations=options.all_orientations))
                except DoppelError as exc:
                    faults.append(ItemFault(index, item.id, exc))
        with self._write_lock:
            earlier = [self.find(query, options) for query in queries]
            records = self._store_batch(indexed, faults)
        results = []
        for n, record in enumerate(records):
            matches = earlier[n] + self._match_among(queries[n], records[:n], options)
            matches.sort(key=_match_order)
            results.append((record, matches[: options.limit]))
        return results

    def get(self, image_id: str) -> ImageRecord:
        record = self.store.get(image_id)
        if record is None:
            raise ImageNotFound(image_id)
        return record

    def delete(self, image_id: str) -> None:
        with self._write_lock:
            record = self.store.delete(image_id)
            if record is not None:
                self.index.remove([record.key])
        if record is None:
            raise ImageNotFound(image_id)

    def page(self, *, limit: int, after: str | None) -> Page:
        """A page of records in id order; `next` is the cursor for the following page."""
        items = self.store.page(limit=limit + 1, after=after)
        has_more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next=items[-1].id if has_more else None)

    def search(self, data: bytes, *, options: SearchOptions) -> tuple[Upload, list[Match]]:
        """The query file's hashes and the stored images that match it."""
        upload = self.hash_upload(data)
        return upload, self.find(query_of_upload(upload, all_orientations=options.all_orientations), options)

    def search_hash(self, signature: Signature, *, options: SearchOptions) -> list[Match]:
        """The same search for hashes computed elsewhere (only the dHash is required)."""
        variants = variants_of_hashes(signature.dhash, signature.vertical, signature.dct)
        return self.find(Query(variants, sha256=None), options)

    def duplicates_of(self, image_id: str, *, options: SearchOptions) -> tuple[ImageRecord, list[Match]]:
        """A stored image and the other stored images that match it."""
        record = self.get(image_id)
        query = Query(
            variants_of_hashes(record.dhash, record.dhash_vertical, record.dct_hash), sha256=record.sha256
        )
        return record, self.find(query, options, exclude_key=record.key)

    def find(self, query: Query, options: SearchOptions, *, exclude_key: int | None = None) -> list[Match]:
        """Stored images within `max_distance` of the query's dHash (of any of its variants when
        asked), confirmed by the DCT hash when asked; nearest first, ties by id."""
        variants = _variants(query, options)
        best: dict[int, tuple[int, Orientation]] = {}
        # variants come ORIGINAL first, so an equally near original beats a turned variant
        results = self.index.search(
            [v.dhash for v in variants.values()], max_distance=self._threshold(options)
        )
        for orientation, hits in zip(variants, results, strict=True):
            for key, distance in hits:
                if key != exclude_key and (key not in best or distance < best[key][0]):
                    best[key] = (distance, orientation)
        return self._resolve(query, variants, best, options)

    def count(self) -> int:
        return len(self.index)

    def _resolve(
        self,
        query: Query,
        variants: dict[Orientation, Signature],
        best: dict[int, tuple[int, Orientation]],
        options: SearchOptions,
    ) -> list[Match]:
        """Fetch, confirm and order candidates, nearest first, until `limit` matches are certain.

        Candidates are read from the store a chunk at a time in distance order: a far candidate
        is never read once `limit` nearer ones are confirmed (ties at the cut are all read, since
        they are ordered by id).
        """
        candidates = sorted(best.items(), key=lambda item: item[1][0])
        matches: list[Match] = []
        for start in range(0, len(candidates), RESOLVE_CHUNK):
            chunk = candidates[start : start + RESOLVE_CHUNK]
            if options.limit is not None and len(matches) >= options.limit:
                matches.sort(key=_match_order)
                if chunk[0][1][0] > matches[options.limit - 1].distance:
                    break
            records = self.store.get_by_keys([key for key, _ in chunk])
            for key, (distance, orientation) in chunk:
                record = records.get(key)  # None: deleted since the index was searched
                if record is not None:
                    matches += self._kept(
                        query, record, distance, variants[orientation], orientation, options
                    )
        matches.sort(key=_match_order)
        return matches[: options.limit]

    def _hash_file(self, data: bytes, max_bytes: int) -> Upload:
        return self.hash_upload(check_file_size(data, max_bytes))

    def _store_batch(self, indexed: list[tuple[int, NewImage]], faults: list[ItemFault]) -> list[ImageRecord]:
        """Store the images of a batch (store first, then index), or raise BatchRejected.
        The caller holds the write lock."""
        self._refuse(faults + _repeated_ids(indexed))
        try:
            records = self.store.add([new for _, new in indexed])
        except ImageExists as exc:
            taken = set(exc.image_ids)
            self._refuse(
                [ItemFault(i, new.id, ImageExists([new.id])) for i, new in indexed if new.id in taken]
            )
            raise
        self.index.add([r.key for r in records], [r.dhash for r in records])
        return records

    def _match_among(self, query: Query, records: list[ImageRecord], options: SearchOptions) -> list[Match]:
        """`find` over a few records in hand (the earlier files of a batch) instead of the index."""
        variants = _variants(query, options)
        matches = []
        for record in records:
            # the first of equally near variants: ORIGINAL comes first
            distance, orientation = min(
                ((hamming(v.dhash, record.dhash), o) for o, v in variants.items()), key=lambda pair: pair[0]
            )
            if distance <= self._threshold(options):
                matches += self._kept(query, record, distance, variants[orientation], orientation, options)
        return matches

    def _threshold(self, options: SearchOptions) -> int:
        return self.max_distance if options.max_distance is None else options.max_distance

    def _kept(
        self,
        query: Query,
        record: ImageRecord,
        distance: int,
        variant: Signature,
        orientation: Orientation,
        options: SearchOptions,
    ) -> list[Match]:
        """The candidate as a match, or nothing when confirmation is asked and refutes it."""
        dct_distance = (
            None if variant.dct is None or record.dct_hash is None else hamming(variant.dct, record.dct_hash)
        )
        exact = query.sha256 is not None and query.sha256 == record.sha256
        match = Match(record, distance, dct_distance, orientation, exact)
        # Without a DCT hash on both sides there is nothing to confirm with: the dHash decides.
        refuted = not exact and dct_distance is not None and dct_distance > self.confirm_distance
        return [] if options.confirm and refuted else [match]

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
            dct_hash=upload.hashes.dct_hash,
            sha256=upload.sha256,
        )


def query_of_upload(upload: Upload, *, all_orientations: bool = True) -> Query:
    """The query for an uploaded file: with every orientation's hashes, or (cheaper, when the
    search will not turn it) only the original's."""
    if all_orientations:
        return Query(variants_of_image(upload.hashes), sha256=upload.sha256)
    return Query({ORIGINAL: upload.hashes.signature}, sha256=upload.sha256)


def _variants(query: Query, options: SearchOptions) -> dict[Orientation, Signature]:
    """The query's variants the search looks for: all, or the original alone."""
    return query.variants if options.all_orientations else {ORIGINAL: query.variants[ORIGINAL]}


def _match_order(match: Match) -> tuple[int, str]:
    return match.distance, match.record.id


def _repeated_ids(indexed: list[tuple[int, NewImage]]) -> list[ItemFault]:
    """A fault for every item whose id an earlier item of the same batch already has."""
    first: dict[str, int] = {}
    faults = []
    for index, new in indexed:
        if new.id in first:
            faults.append(
                ItemFault(index, new.id, InvalidInput(f"id {new.id!r} is also given to item {first[new.id]}"))
            )
        else:
            first[new.id] = index
    return faults
