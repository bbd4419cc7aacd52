"""In-memory Hamming index over 64-bit hashes: a cache of the store, rebuilt from it at start-up."""

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

HASH_BYTES = 8


def hashes_to_codes(hashes: Iterable[int] | np.ndarray) -> np.ndarray:
    """Pack 64-bit hashes into faiss's binary layout: one row of 8 bytes each, big-endian."""
    values = np.asarray(hashes, dtype=np.uint64) if not isinstance(hashes, np.ndarray) else hashes
    return values.astype(">u8").view(np.uint8).reshape(-1, HASH_BYTES)


class HammingIndex:
    """faiss IndexBinaryIDMap over IndexBinaryFlat(64): exhaustive, exact Hamming search.

    Ids are the store's integer keys, so they stay stable through removals. faiss allows
    concurrent searches but no search during an add or remove, so a readers-writer lock guards
    the index: searches share it, writes take it alone.
    """

    def __init__(self) -> None:
        self._index = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(HASH_BYTES * 8))
        self._lock = _ReadWriteLock()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def save(self, path: Path) -> None:
        """Write the index (codes and keys) to `path` in faiss's format."""
        with self._lock.reading():
            faiss.write_index_binary(self._index, str(path))

    def load(self, path: Path) -> None:
        """Replace the contents with an index saved by `save`."""
        loaded = faiss.read_index_binary(str(path))
        if not isinstance(loaded, faiss.IndexBinaryIDMap) or loaded.d != HASH_BYTES * 8:
            raise ValueError(f"{path} does not hold an index of 64-bit hashes with ids")
        with self._lock.writing():
            self._index = loaded

    def add(self, keys: np.ndarray | list[int], hashes: np.ndarray | list[int]) -> None:
        """Add hashes under the given keys (the caller never reuses a key)."""
        ids = np.asarray(keys, dtype=np.int64)
        if len(ids) == 0:
            return
        codes = hashes_to_codes(np.asarray(hashes, dtype=np.uint64))
        _one_openmp_thread()
        with self._lock.writing():
            self._index.add_with_ids(codes, ids)

    def remove(self, keys: np.ndarray | list[int]) -> None:
        """Remove the given keys; keys not in the index are ignored."""
        if len(keys) == 0:
            return
        selector = faiss.IDSelectorBatch(np.asarray(keys, dtype=np.int64))
        _one_openmp_thread()
        with self._lock.writing():
            self._index.remove_ids(selector)

    def search(self, hashes: list[int], *, max_distance: int) -> list[list[tuple[int, int]]]:
        """For each query hash, the (key, distance) pairs with distance <= max_distance (inclusive)."""
        queries = hashes_to_codes(np.asarray(hashes, dtype=np.uint64))
        radius = max_distance + 1  # faiss range_search keeps distances strictly below the radius
        _one_openmp_thread()
        with self._lock.reading():
            limits, distances, ids = self._index.range_search(queries, radius)
        return [
            list(
                zip(
                    ids[limits[q] : limits[q + 1]].tolist(),
                    distances[limits[q] : limits[q + 1]].tolist(),
                    strict=True,
                )
            )
            for q in range(len(hashes))
        ]


def _one_openmp_thread() -> None:
    """Make faiss run single-threaded in the calling thread.

    The request threads already use the cores, and OpenMP's thread count is a setting of each
    calling thread: set once at start-up, it leaves every request thread with a team of OpenMP
    threads that spin while they wait (measured: 0.8 ms of CPU per search of 1,000 hashes).
    Setting it costs nanoseconds, so it is set before every call.
    """
    faiss.omp_set_num_threads(1)


class _ReadWriteLock:
    """Many readers or one writer. A waiting writer blocks new readers, so writes never starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._writer = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()
