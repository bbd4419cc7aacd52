"""The storage interface. The store is the system of record and the point where processes meet:
its change log tells every process's index what changed, and its write lock orders the writes.

The log is a sequence of positions, one per change, that only grows, in commit order:
- an added image takes the next position as its key (so keys are never reused, even after a
  delete, and the index can use them as ids);
- a deleted image leaves a tombstone: the next position, naming the key it removed;
- a replace is a delete and an add.
Every position up to `head()` is committed: a process that has applied every change up to a
position holds exactly the images stored at that point.
"""

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np

from app.errors import ImageExists
from app.models import ImageRecord, NewImage

# What the index is built from, one row per image: key, dHash, whether a centre dHash is known (1)
# or not (0), the centre dHash (0 when not known), and the same two of the DCT hash.
HASH_COLUMNS = (
    "key, dhash, centre_dhash IS NOT NULL, coalesce(centre_dhash, 0), "
    "dct_hash IS NOT NULL, coalesce(dct_hash, 0)"
)
# And of the images that have other cuts (read apart: most have none), their packed hashes
# (app/store/columns.py pack_cuts).
CUT_COLUMNS = "key, cuts"
_CUT_BYTES = 24  # three 64-bit hashes


@dataclass(frozen=True, slots=True)
class StoredHashes:
    """Stored images' keys and dHashes in key order, the centre dHashes and DCT hashes of those
    that have one, and the dHashes and DCT hashes of their other cuts (a key once for each)."""

    keys: np.ndarray  # int64
    hashes: np.ndarray  # uint64
    centre_keys: np.ndarray  # int64, in key order
    centre_hashes: np.ndarray  # uint64
    dct_keys: np.ndarray  # int64, in key order
    dct_hashes: np.ndarray  # uint64
    cut_keys: np.ndarray  # int64, in key order
    cut_hashes: np.ndarray  # uint64
    cut_dcts: np.ndarray  # uint64

    @staticmethod
    def of(
        rows: list[tuple[int, int, int, int, int, int]], cut_rows: list[tuple[int, bytes]]
    ) -> "StoredHashes":
        """From rows of HASH_COLUMNS and of CUT_COLUMNS in key order, 64-bit hashes as signed
        integers (as SQL keeps them)."""
        table = np.array(rows, dtype=np.int64).reshape(-1, 6)
        hashes = table.view(np.uint64)
        centred, with_dct = table[:, 2] == 1, table[:, 4] == 1
        return StoredHashes(
            table[:, 0].copy(),
            hashes[:, 1].copy(),
            table[centred, 0],
            hashes[centred, 3],
            table[with_dct, 0],
            hashes[with_dct, 5],
            *cuts_table(
                np.array([key for key, _ in cut_rows], dtype=np.int64),
                np.array([len(packed) for _, packed in cut_rows], dtype=np.int64),
                b"".join(packed for _, packed in cut_rows),
            ),
        )


def cuts_table(
    keys: np.ndarray, sizes: np.ndarray, packed: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The keys (one for each cut, in key order), dHashes and DCT hashes of the cuts of images
    with these keys, whose packed cuts (`sizes` bytes each) are concatenated in `packed`."""
    words = np.frombuffer(packed, dtype=">u8").astype(np.uint64).reshape(-1, 3)
    cut_keys = np.repeat(keys, sizes // _CUT_BYTES)
    order = np.argsort(cut_keys, kind="stable")
    return cut_keys[order], words[order, 0], words[order, 2]


@dataclass(frozen=True, slots=True)
class Changes:
    """The log between two positions: the images added (still stored when read) and the keys
    removed. Apply the additions first, then the removals: an image added and deleted in the same
    stretch is then gone, whether or not its row was read."""

    added: StoredHashes
    removed_keys: np.ndarray  # int64


class WriteTransaction(Protocol):
    """The writes of one transaction, made under the store-wide write lock."""

    @property
    def head(self) -> int:
        """The log's position when the lock was taken: every write before it is committed."""
        ...

    @property
    def position(self) -> int:
        """The log's position after this transaction's writes so far."""
        ...

    def add(self, images: list[NewImage]) -> list[ImageRecord]:
        """Store new images and return them in the given order.

        Raises ImageExists if an id is already stored, or appears twice in `images`; the
        transaction is then rolled back (nothing of it is stored).
        """
        ...

    def replace(self, image: NewImage) -> tuple[ImageRecord, ImageRecord | None]:
        """Store `image` under its id, replacing any record there. The new record gets a new key.
        Returns the new record and the one it replaced, or None."""
        ...

    def delete(self, image_id: str) -> ImageRecord | None:
        """Delete the record with this id and return it; None (and no change) if there is none."""
        ...


class ImageStore(Protocol):
    """Durable image records and their change log. Implementations: SQLiteImageStore,
    PostgresImageStore, MemoryImageStore (one process, nothing kept).

    Every method may raise StoreUnavailable when the database cannot be reached, and a write
    StoreFull when the store has no room left; nothing acknowledged is lost then.
    """

    @property
    def identity(self) -> str:
        """A random name given to the store when it was created: an index snapshot taken of one
        store is never loaded against another."""
        ...

    @property
    def migrated_from(self) -> int | None:
        """The schema version the store was at when this process opened it and brought it to
        this code's (0: a new store), or None when it was already there."""
        ...

    def writing(self) -> AbstractContextManager[WriteTransaction]:
        """Take the write lock that every process shares, and open a transaction.

        The block's writes commit together when it ends, and are all rolled back when it raises.
        Inside it no other writer, in any process, can commit: a duplicate check made there, once
        the index has caught up to `head`, sees every earlier write. A block that only deletes is
        committed even when the store is full, as far as the store can make room for it.
        """
        ...

    def head(self) -> int:
        """The last committed position of the log (0 for a new store)."""
        ...

    def changes(self, after: int, upto: int) -> Changes:
        """The changes at positions after `after` and up to `upto` (at most `head()`)."""
        ...

    def iter_hashes(self, batch_size: int, *, upto: int) -> Iterator[StoredHashes]:
        """Every stored (keys int64, dhashes uint64) with key <= `upto`, in key order, in batches of
        at most `batch_size`. Read `upto` from head() first: with the changes after it, that gives
        the whole store, whatever is written meanwhile."""
        ...

    def get(self, image_id: str) -> ImageRecord | None:
        """The record with this id, or None."""
        ...

    def get_by_keys(self, keys: list[int]) -> dict[int, ImageRecord]:
        """The records with these keys; keys with no record are left out."""
        ...

    def thumbnail(self, image_id: str) -> bytes | None:
        """The thumbnail stored with the image of this id; None when there is no such image or it
        has none (added by its hash alone, or with thumbnails off). Deleted with its image."""
        ...

    def page(self, *, limit: int, after: str | None) -> list[ImageRecord]:
        """Up to `limit` records in id order, starting after the id `after` (from the start if None)."""
        ...

    def count(self) -> int:
        """Number of stored records."""
        ...

    def size_bytes(self) -> int:
        """Bytes the store takes on disk (0 for one that keeps nothing)."""
        ...

    def count_older(self, hashing_version: int) -> int:
        """Number of records whose hashes come from a hashing version before `hashing_version`."""
        ...

    def older(self, hashing_version: int, *, after_key: int, limit: int) -> list[ImageRecord]:
        """Up to `limit` records with a hashing version before `hashing_version` and a key after
        `after_key`, in key order."""
        ...

    def on_change(self, wake: "Wake") -> None:
        """Call `wake()` soon after another process commits a write, where the store can tell
        (PostgreSQL: LISTEN/NOTIFY); a store that cannot does nothing, and readers poll head()."""
        ...

    def describe(self) -> str:
        """Where the store is, for the log: a path or a URL without its password."""
        ...

    def close(self) -> None:
        """Release the store's resources; later calls are errors."""
        ...


class StoreUnusable(Exception):
    """The store cannot be opened, for a reason a person must fix: a data folder that is a file or
    read-only, a file that is not Doppel's database, is damaged, or was written by a newer Doppel.
    Raised at start only; its message is one line naming the path."""


class Wake(Protocol):
    def __call__(self) -> None: ...


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
