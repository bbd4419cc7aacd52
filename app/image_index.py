"""The stored images' hashes in memory, under their keys: exact Hamming indexes of the dHashes of
the whole pictures, of the DCT hashes of the whole pictures (where known), of the dHashes of
their centres (where known), and of the dHashes and DCT hashes of their other cuts, so that a
search finds an image by any of them (docs/accuracy.md). All are saved to, and loaded from, one
snapshot file, which begins with their layout (SNAPSHOT_MAGIC)."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.imaging import MAX_CUTS
from app.index import FrozenIndex, HammingIndex
from app.store.base import StoredHashes

Hits = list[tuple[int, int]]  # (key, distance) of the hashes held near one looked up
# An image's cuts are held under keys of their own (an index holds one hash a key): the image's
# key times this, plus the cut's number.
CUT_SLOTS = MAX_CUTS
# What a snapshot begins with: the five indexes follow, their cuts keyed with CUT_SLOTS. A snapshot
# of another layout is not loaded (its cut keys would name other images): the index is rebuilt.
SNAPSHOT_MAGIC = b"DOPPELIMG" + CUT_SLOTS.to_bytes(3, "big")


@dataclass(frozen=True, slots=True)
class Found:
    """What a search found: for each hash looked up, in order, its hits (a whole picture's hash
    among the whole pictures' and the cuts' alike)."""

    wholes: list[Hits]
    dcts: list[Hits]
    centres: list[Hits]


class FrozenImageIndex:
    """The indexes as they were taken, to save while they go on changing."""

    def __init__(self, indexes: tuple[FrozenIndex, ...]) -> None:
        self._indexes = indexes

    def save(self, path: Path) -> None:
        """Write them to `path`, in ImageIndex's order."""
        with open(path, "wb") as out:
            out.write(SNAPSHOT_MAGIC)
            for index in self._indexes:
                index.write(out)


class ImageIndex:
    """The indexes, changed together by one writer (the syncer); searched by any thread."""

    def __init__(self) -> None:
        self.whole = HammingIndex()
        self.dct = HammingIndex()
        self.centre = HammingIndex()
        self.cut = HammingIndex()
        self.cut_dct = HammingIndex()

    def __len__(self) -> int:
        """The images held."""
        return len(self.whole)

    def add(self, hashes: StoredHashes) -> None:
        keys = hashes.cut_keys  # in key order: a key's cuts are numbered 0, 1... in turn
        numbers = np.arange(len(keys)) - np.searchsorted(keys, keys)
        held = numbers < CUT_SLOTS  # Doppel makes no more: one more would take the next key's slot
        self.whole.add(hashes.keys, hashes.hashes)
        self.dct.add(hashes.dct_keys, hashes.dct_hashes)
        self.centre.add(hashes.centre_keys, hashes.centre_hashes)
        self.cut.add(keys[held] * CUT_SLOTS + numbers[held], hashes.cut_hashes[held])
        self.cut_dct.add(keys[held] * CUT_SLOTS + numbers[held], hashes.cut_dcts[held])

    def remove(self, keys: np.ndarray) -> None:
        for index in (self.whole, self.dct, self.centre):
            index.remove(keys)
        cut_keys = (keys[:, np.newaxis] * CUT_SLOTS + np.arange(CUT_SLOTS)).ravel()
        for index in (self.cut, self.cut_dct):
            index.remove(cut_keys)

    def search(
        self, wholes: list[int], dcts: list[int], centres: list[int], *, max_distance: int, cuts: bool = True
    ) -> Found:
        """The hits within `max_distance` of each of `wholes` (`wholes_near`), of `dcts`
        (`dcts_near`) and of `centres` (`centres_near`); among the whole pictures' alone, not
        their cuts', unless `cuts`."""
        return Found(
            (self.wholes_near if cuts else self.whole.search)(wholes, max_distance=max_distance),
            (self.dcts_near if cuts else self.dct.search)(dcts, max_distance=max_distance),
            self.centres_near(centres, max_distance=max_distance),
        )

    def wholes_near(self, hashes: list[int], *, max_distance: int) -> list[Hits]:
        """For each dHash, the images whose whole picture's dHash, or a cut's, is within `max_distance`."""
        return _with_cuts(self.whole, self.cut, hashes, max_distance)

    def dcts_near(self, hashes: list[int], *, max_distance: int) -> list[Hits]:
        """For each DCT hash, the images whose whole picture's or a cut's is within `max_distance`."""
        return _with_cuts(self.dct, self.cut_dct, hashes, max_distance)

    def centres_near(self, hashes: list[int], *, max_distance: int) -> list[Hits]:
        """For each dHash, the images whose centre's dHash is within `max_distance`."""
        return self.centre.search(hashes, max_distance=max_distance)

    def frozen(self) -> FrozenImageIndex:
        return FrozenImageIndex(tuple(index.frozen() for index in self._indexes()))

    def save(self, path: Path) -> None:
        self.frozen().save(path)

    def load(self, path: Path) -> None:
        """Replace them with those saved in `path`; ValueError (or OSError) if it does not hold
        them, leaving the index as it was."""
        indexes = tuple(HammingIndex() for _ in self._indexes())
        with open(path, "rb") as source:
            if source.read(len(SNAPSHOT_MAGIC)) != SNAPSHOT_MAGIC:
                raise ValueError(f"{path} does not hold a snapshot of this version's indexes")
            for index in indexes:
                index.read(source, path)
            if source.read(1):
                raise ValueError(f"{path}: unexpected bytes after the index")
        self.whole, self.dct, self.centre, self.cut, self.cut_dct = indexes

    def _indexes(self) -> tuple[HammingIndex, ...]:
        return self.whole, self.dct, self.centre, self.cut, self.cut_dct


def _with_cuts(wholes: HammingIndex, cuts: HammingIndex, hashes: list[int], max_distance: int) -> list[Hits]:
    """The hits of each hash among the whole pictures', then among the cuts', under the images' keys."""
    found = cuts.search(hashes, max_distance=max_distance)
    return [
        hits + [(key // CUT_SLOTS, distance) for key, distance in cut_hits]
        for hits, cut_hits in zip(wholes.search(hashes, max_distance=max_distance), found, strict=True)
    ]
