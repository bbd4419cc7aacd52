"""The stored images' hashes in memory, under their keys: one exact Hamming index of the dHashes of
the whole pictures, and one of the dHashes of their centres (where known), so that a search finds
an image by either (docs/accuracy.md). Both are saved to, and loaded from, one snapshot file."""

from pathlib import Path

import numpy as np

from app.index import FrozenIndex, HammingIndex
from app.store.base import StoredHashes


class FrozenImageIndex:
    """Both indexes as they were taken, to save while they go on changing."""

    def __init__(self, whole: FrozenIndex, centre: FrozenIndex) -> None:
        self._whole = whole
        self._centre = centre

    def save(self, path: Path) -> None:
        """Write both to `path`, the whole pictures' first."""
        with open(path, "wb") as out:
            self._whole.write(out)
            self._centre.write(out)


class ImageIndex:
    """The two indexes, changed together by one writer (the syncer); searched by any thread."""

    def __init__(self) -> None:
        self.whole = HammingIndex()
        self.centre = HammingIndex()

    def __len__(self) -> int:
        """The images held."""
        return len(self.whole)

    def add(self, hashes: StoredHashes) -> None:
        self.whole.add(hashes.keys, hashes.hashes)
        self.centre.add(hashes.centre_keys, hashes.centre_hashes)

    def remove(self, keys: np.ndarray) -> None:
        self.whole.remove(keys)
        self.centre.remove(keys)

    def search(
        self, wholes: list[int], centres: list[int], *, max_distance: int
    ) -> tuple[list[list[tuple[int, int]]], list[list[tuple[int, int]]]]:
        """For each of `wholes`, the (key, distance) pairs of the whole pictures within
        `max_distance`; for each of `centres`, those of the centres."""
        return (
            self.whole.search(wholes, max_distance=max_distance),
            self.centre.search(centres, max_distance=max_distance) if centres else [],
        )

    def frozen(self) -> FrozenImageIndex:
        return FrozenImageIndex(self.whole.frozen(), self.centre.frozen())

    def save(self, path: Path) -> None:
        self.frozen().save(path)

    def load(self, path: Path) -> None:
        """Replace both with those saved in `path`; ValueError (or OSError) if it does not hold
        them, leaving the index as it was."""
        whole, centre = HammingIndex(), HammingIndex()
        with open(path, "rb") as source:
            whole.read(source, path)
            centre.read(source, path)
            if source.read(1):
                raise ValueError(f"{path}: unexpected bytes after the index")
        self.whole, self.centre = whole, centre
