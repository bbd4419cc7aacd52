"""Ingest: hash and write images (one, a batch of files, a batch of hashes), replace and delete.

Writes go to the store only; this process's index learns of them from the store's log, like every
other process's, and a write returns once its own index holds it (read-your-writes on a replica).
"""

import logging
import os
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
    StoreUnavailable,
)
from app.imaging import HASHING_VERSION
from app.models import FileItem, HashItem, ImageRecord, Match, Metadata, NewImage
from app.service.matching import (
    EVERY_IDENTICAL_HASH,
    Matching,
    SearchOptions,
    match_order,
    query_of_upload,
)
from app.service.sync import IndexSyncer
from app.service.uploads import Upload, UploadHasher
from app.store import ImageStore, WriteTransaction
from app.validation import (
    check_hashing_version,
    check_image_id,
    check_metadata,
    new_image_id,
    parse_hash,
    parse_metadata,
    parse_optional_hash,
)

logger = logging.getLogger("doppel")

# How long a write waits for its index to reach the store's head (a duplicate check, before the
# write) or its own commit (after it): past that the index is not following the store.
CATCH_UP_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Added:
    """An uploaded image once stored: its record, its matches, and whether its picture is one flat
    tone (app/imaging ImageHashes.flat: many of its edited copies are missed)."""

    record: ImageRecord
    duplicates: list[Match]
    flat: bool
    created: bool = True  # False: it replaced the image stored under its id


class OnDuplicate(StrEnum):
    """What POST /images does with a copy of a stored image."""

    ALLOW = "allow"  # store it and report the matches
    REJECT = "reject"  # refuse it when anything matches
    REJECT_EXACT = "reject_exact"  # refuse it only when the bytes are identical


class Ingest:
    def __init__(
        self, store: ImageStore, syncer: IndexSyncer, matching: Matching, hasher: UploadHasher
    ) -> None:
        self.store = store
        self.syncer = syncer
        self.matching = matching
        self.hasher = hasher

    def add(
        self,
        data: bytes,
        *,
        image_id: str | None,
        metadata: Metadata,
        options: SearchOptions | None = None,
        on_duplicate: OnDuplicate = OnDuplicate.ALLOW,
    ) -> Added:
        """Store a new image; also return its matches among the images stored before it.

        With `on_duplicate` REJECT (any match) or REJECT_EXACT (identical bytes) a copy raises
        DuplicateImage and nothing is stored: the check and the insert are made under the store's
        write lock, once the index holds every earlier write, so two copies sent at once to two
        replicas cannot both pass it.
        """
        upload = self.hasher.hash(data)
        new = new_image(upload, image_id=_id_or_new(image_id), metadata=metadata)
        options = options or SearchOptions()
        query = query_of_upload(upload, all_orientations=options.all_orientations)
        if on_duplicate is OnDuplicate.ALLOW:
            duplicates = self.matching.find(query, options)
            with self.store.writing() as write:
                (record,) = write.add([new])
        else:
            with self.store.writing() as write:
                self._catch_up(write)
                duplicates = self.matching.find(query, options)
                if on_duplicate is OnDuplicate.REJECT and duplicates:
                    raise DuplicateImage(duplicates)
                if on_duplicate is OnDuplicate.REJECT_EXACT:
                    # Every identical file, not only those within `limit`: identical bytes decode
                    # to the same pixels, so they are all at distance 0.
                    exact = [m for m in self.matching.find(query, EVERY_IDENTICAL_HASH) if m.exact]
                    if exact:
                        raise DuplicateImage(exact)
                (record,) = write.add([new])
        self._show(write)
        return Added(record, duplicates, upload.hashes.flat)

    def put(
        self, image_id: str, data: bytes, *, metadata: Metadata, options: SearchOptions | None = None
    ) -> Added:
        """Create or replace the image under `image_id`; its duplicates are the other stored images
        that match it."""
        upload = self.hasher.hash(data)
        new = new_image(upload, image_id=check_image_id(image_id), metadata=metadata)
        with self.store.writing() as write:
            record, old = write.replace(new)
        self._show(write)
        options = options or SearchOptions()
        query = query_of_upload(upload, all_orientations=options.all_orientations)
        duplicates = self.matching.find(query, options, exclude_key=record.key)
        return Added(record, duplicates, upload.hashes.flat, created=old is None)

    def add_hashes(self, items: list[HashItem]) -> list[ImageRecord]:
        """Store images known by their hashes alone (the dHash, and the vertical and DCT hashes,
        the centre's and the other cuts' when given), in one transaction, all or nothing.

        Raises BatchRejected naming every refused item (bad hash, hashing version, id or metadata;
        an id given twice or already stored); then nothing is stored.
        """
        indexed: list[tuple[int, NewImage]] = []
        faults: list[ItemFault] = []
        for index, item in enumerate(items):
            try:
                centre_dhash, centre_vertical, centre_dct = (
                    (None, None, None) if item.centre is None else _part_hashes(item.centre, "centre")
                )
                new = NewImage(
                    id=_id_or_new(item.id),
                    dhash=parse_hash(item.hash),
                    width=None,
                    height=None,
                    metadata=check_metadata(item.metadata),
                    dhash_vertical=parse_optional_hash(item.vertical_hash, "vertical_hash"),
                    dct_hash=parse_optional_hash(item.dct_hash, "dct_hash"),
                    centre_dhash=centre_dhash,
                    centre_vertical=centre_vertical,
                    centre_dct=centre_dct,
                    cuts=tuple(_part_hashes(cut, f"cuts[{n}]") for n, cut in enumerate(item.cuts)),
                    hashing_version=check_hashing_version(item.hashing_version),
                )
                indexed.append((index, new))
            except DoppelError as exc:
                faults.append(ItemFault(index, item.id, exc))
        return self._store_batch(indexed, faults)

    def add_files(
        self, files: list[FileItem], *, max_file_bytes: int, options: SearchOptions | None = None
    ) -> list[Added]:
        """Store uploaded files in one transaction, all or nothing, each with its matches among
        the images stored before it, the earlier files of the batch included.

        The files are hashed on every core at once. Raises BatchRejected naming every refused
        file (over `max_file_bytes`, not an image, damaged, bad id or metadata, id taken).
        """
        options = options or SearchOptions()
        indexed: list[tuple[int, NewImage]] = []
        uploads: list[Upload] = []
        faults: list[ItemFault] = []
        with ThreadPoolExecutor(max_workers=min(len(files), os.cpu_count() or 1) or 1) as pool:
            # Pillow and numpy release the GIL while they decode and resize, so threads use every core.
            hashing = [pool.submit(self.hasher.hash_file, item.data, max_file_bytes) for item in files]
            for index, (item, hashed) in enumerate(zip(files, hashing, strict=True)):
                try:
                    upload = hashed.result()  # raises the file's hashing error
                    metadata = parse_metadata(item.metadata)
                    new = new_image(upload, image_id=_id_or_new(item.id), metadata=metadata)
                    indexed.append((index, new))
                    uploads.append(upload)
                except DoppelError as exc:
                    faults.append(ItemFault(index, item.id, exc))
        queries = [query_of_upload(upload, all_orientations=options.all_orientations) for upload in uploads]
        earlier = [self.matching.find(query, options) for query in queries]
        records = self._store_batch(indexed, faults)
        results = []
        for n, record in enumerate(records):
            matches = earlier[n] + self.matching.match_among(queries[n], records[:n], options)
            matches.sort(key=match_order)
            results.append(Added(record, matches[: options.limit], uploads[n].hashes.flat))
        return results

    def delete(self, image_id: str) -> None:
        image_id = check_image_id(image_id)
        with self.store.writing() as write:
            record = write.delete(image_id)
        if record is None:
            raise ImageNotFound(image_id)
        self._show(write)

    def _store_batch(self, indexed: list[tuple[int, NewImage]], faults: list[ItemFault]) -> list[ImageRecord]:
        """Store the images of a batch in one transaction, or raise BatchRejected."""
        _refuse(faults + _repeated_ids(indexed))
        try:
            with self.store.writing() as write:
                records = write.add([new for _, new in indexed])
        except ImageExists as exc:
            taken = set(exc.image_ids)
            _refuse([ItemFault(i, new.id, ImageExists([new.id])) for i, new in indexed if new.id in taken])
            raise
        self._show(write)
        return records

    def _catch_up(self, write: WriteTransaction) -> None:
        """Inside the write lock: wait until the index holds every committed write."""
        if not self.syncer.wait_for(write.head, CATCH_UP_TIMEOUT_S):
            raise StoreUnavailable("the index cannot catch up with the store; nothing was stored")

    def _show(self, write: WriteTransaction) -> None:
        """After a commit: wait until this process's index holds it, so the client's next search
        on this replica finds it. The write is durable either way, so a slow index is only logged."""
        if not self.syncer.wait_for(write.position, CATCH_UP_TIMEOUT_S):
            logger.warning("the index has not reached log position %d yet", write.position)


def _refuse(faults: list[ItemFault]) -> None:
    if faults:
        raise BatchRejected(sorted(faults, key=lambda fault: fault.index))


def _part_hashes(texts: tuple[str, str, str], part: str) -> tuple[int, int, int]:
    """The three hashes of a part given as hex (`part` names it in an error)."""
    dhash, vertical, dct = texts
    return (
        parse_hash(dhash, f"{part}.hash"),
        parse_hash(vertical, f"{part}.vertical_hash"),
        parse_hash(dct, f"{part}.dct_hash"),
    )


def _id_or_new(image_id: str | None) -> str:
    """The client's id, checked, or a new one when the client gave none."""
    return new_image_id() if image_id is None else check_image_id(image_id)


def new_image(
    upload: Upload, *, image_id: str, metadata: Metadata, created_at: str | None = None
) -> NewImage:
    """The record to store for a hashed upload."""
    centre = upload.hashes.centre.signature
    return NewImage(
        id=image_id,
        dhash=upload.hashes.dhash,
        width=upload.hashes.width,
        height=upload.hashes.height,
        metadata=metadata,
        dhash_vertical=upload.hashes.dhash_vertical,
        dct_hash=upload.hashes.dct_hash,
        centre_dhash=centre.dhash,
        centre_vertical=centre.vertical,
        centre_dct=centre.dct,
        cuts=upload.hashes.cuts,
        sha256=upload.sha256,
        hashing_version=HASHING_VERSION,
        created_at=created_at,
        thumbnail=upload.thumbnail,
    )


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
