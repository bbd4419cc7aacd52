"""Re-hash: give the records hashed by an older version of Doppel's hashing the current hashes, from
their original files where the user still has them (Doppel keeps no pictures). The others keep
their old hashes and go on matching with them."""

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.errors import DoppelError
from app.imaging import HASHING_VERSION
from app.models import ImageRecord, NewImage
from app.service.ingest import new_image
from app.service.uploads import UploadHasher
from app.store import ImageStore

# Records re-hashed in one transaction: few enough that the write lock is soon free for the server.
REHASH_BATCH = 100


@dataclass(slots=True)
class RehashReport:
    older: int  # records on an older hashing version when the run began
    rehashed: int = 0  # of those, re-hashed from their files
    failed: list[tuple[Path, str]] = field(default_factory=list)  # originals that could not be hashed

    @property
    def left(self) -> int:
        """The records left on their old hashes."""
        return self.older - self.rehashed


class FolderFiles:
    """The files of a folder and its subfolders, found by path relative to it (with '/') and by the
    SHA-256 of their bytes. Hidden files and folders are left out."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.by_path: dict[str, Path] = {}
        self.by_sha256: dict[str, Path] = {}
        self.unreadable: list[tuple[Path, str]] = []
        for path in _files(folder):
            self.by_path[path.relative_to(folder).as_posix()] = path
            try:
                self.by_sha256.setdefault(_sha256(path), path)
            except OSError as exc:
                self.unreadable.append((path, exc.strerror or str(exc)))

    def original_of(self, record: ImageRecord) -> Path | None:
        """The record's original: the file with the bytes it was uploaded with; for a record added
        by its hashes (no SHA-256 kept), the file whose relative path is its id."""
        if record.sha256 is not None:
            return self.by_sha256.get(record.sha256)
        return self.by_path.get(record.id)


def count_older(store: ImageStore) -> int:
    """The records hashed by a version of the hashing before this Doppel's."""
    return store.count_older(HASHING_VERSION)


def rehash(
    store: ImageStore, hasher: UploadHasher, originals: FolderFiles, *, max_file_bytes: int
) -> RehashReport:
    """Re-hash every record on an older hashing version whose original is among `originals` (a
    file over `max_file_bytes`, as an upload, is not hashed).

    A re-hashed record keeps its id, metadata and creation time, and gets a new key (a replace in
    the change log: running servers follow it). A record changed meanwhile is left alone.
    """
    report = RehashReport(older=count_older(store))
    after_key = 0
    while records := store.older(HASHING_VERSION, after_key=after_key, limit=REHASH_BATCH):
        after_key = records[-1].key
        renewed = []
        for record in records:
            path = originals.original_of(record)
            if path is None:
                continue
            try:
                renewed.append((record, _rehashed(record, hasher, path, max_file_bytes)))
            except (DoppelError, OSError) as exc:
                report.failed.append((path, str(exc)))
        if renewed:
            with store.writing() as write:
                # Under the write lock: a record replaced or deleted since it was read is not there.
                current = store.get_by_keys([record.key for record, _ in renewed])
                for record, new in renewed:
                    if record.key in current:
                        write.replace(new)
                        report.rehashed += 1
    return report


def _rehashed(record: ImageRecord, hasher: UploadHasher, path: Path, max_bytes: int) -> NewImage:
    with path.open("rb") as handle:
        upload = hasher.hash_file(handle.read(max_bytes + 1), max_bytes)
    return new_image(upload, image_id=record.id, metadata=record.metadata, created_at=record.created_at)


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
        if path.is_file() and not hidden:
            yield path


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
