"""The stored images' hashes in memory, under their keys: exact Hamming indexes of the dHashes of
the whole pictures, of the DCT hashes of the whole pictures (where known), and of the dHashes of
their centres (where known), so that a search finds an image by any of them (docs/accuracy.md).
All are saved to, and loaded from, one snapshot file."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.index import FrozenIndex, HammingIndex
from app.store.base import StoredHashes

Hits = list[tuple[int, int]]  # (key, distance) of the hashes held near one looked up


@dataclass(frozen=True, slots=True)
class Found:
    """What a search found: for each hash looked up, in order, its hits."""

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
            for index in self._indexes:
                index.write(out)


class ImageIndex:
    """The indexes, changed together by one writer (the syncer); searched by any thread."""

    def __init__(self) -> None:
        self.whole = HammingIndex()
        self.dct = HammingIndex()
        self.centre = HammingIndex()

    def __len__(self) -> int:
        """The images held."""
        return len(self.whole)

    def add(self, hashes: StoredHashes) -> None:
        self.whole.add(hashes.keys, hashes.hashes)
        self.dct.add(hashes.dct_keys, hashes.dct_hashes)
        self.centre.add(hashes.centre_keys, hashes.centre_hashes)

    def remove(self, keys: np.ndarray) -> None:
        for index in self._indexes():
            index.remove(keys)

    def search(self, wholes: list[int], dcts: list[int], centres: list[int], *, max_distance: int) -> Found:
        """The (key, distance) pairs within `max_distance` of each of `wholes` among the whole
        pictures' dHashes, of each of `dcts` among their DCT hashes, and of each of `centres` among
        the centres' dHashes."""
        return Found(
            *(
                index.search(hashes, max_distance=max_distance)
                for index, hashes in ((self.whole, wholes), (self.dct, dcts), (self.centre, centres))
            )
        )

    def frozen(self) -> FrozenImageIndex:
        return FrozenImageIndex(tuple(index.frozen() for index in self._indexes()))

    def save(self, path: Path) -> None:
        self.frozen().save(path)

    def load(self, path: Path) -> None:
        """Replace them with those saved in `path`; ValueError (or OSError) if it does not hold
        them, leaving the index as it was."""
        whole, dct, centre = HammingIndex(), HammingIndex(), HammingIndex()
        with open(path, "rb") as source:
            for index in (whole, dct, centre):
                index.read(source, path)
            if source.read(1):
                raise ValueError(f"{path}: unexpected bytes after the index")
        self.whole, self.dct, self.centre = whole, dct, centre

    def _indexes(self) -> tuple[HammingIndex, ...]:
        return self.whole, self.dct, self.centre
