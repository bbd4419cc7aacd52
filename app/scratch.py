"""Scratch memory lent to one hash at a time and taken back, instead of allocated afresh.

An array of more than 128 KiB is mapped by glibc straight from the kernel and faulted in page by
page on first touch, on every call: for the grey copy of a 16-megapixel photo (16 MiB) that cost
5-15 ms, a third of the hash's own work, and half of a 0.4 ms resize of a 400x400 image. A lent
buffer has been touched before. At most as many buffers are kept as were ever lent at once (the
service bounds the hashes running at once with max_concurrent_decodes), each up to `max_kept_bytes`;
a larger need gets a fresh array, dropped after use.
"""

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class ScratchPool:
    """Buffers lent as arrays of any shape and dtype, whose content is undefined."""

    def __init__(self, max_kept_bytes: int) -> None:
        self.max_kept_bytes = max_kept_bytes
        self._free: list[np.ndarray] = []  # uint8, smallest first
        self._lock = threading.Lock()

    @contextmanager
    def lend(self, shape: tuple[int, ...], dtype: type[np.generic]) -> Iterator[np.ndarray]:
        """An array of `shape` and `dtype`, the caller's until the block ends (not after)."""
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        buffer = self._take(nbytes)
        try:
            yield buffer[:nbytes].view(dtype).reshape(shape)
        finally:
            self._give_back(buffer)

    def kept_bytes(self) -> int:
        """Bytes held by the buffers not lent out now."""
        with self._lock:
            return sum(buffer.size for buffer in self._free)

    def _take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            for n, buffer in enumerate(self._free):
                if buffer.size >= nbytes:
                    return self._free.pop(n)
            if self._free and nbytes <= self.max_kept_bytes:
                # Replaced by a larger one: the count kept stays the most ever lent at once.
                self._free.pop(0)
        return np.empty(nbytes, dtype=np.uint8)

    def _give_back(self, buffer: np.ndarray) -> None:
        if buffer.size > self.max_kept_bytes:
            return
        with self._lock:
            self._free.append(buffer)
            self._free.sort(key=len)


# The process's pool: grey images of up to 32 megapixels, and the resize's blocks, are reused.
SCRATCH = ScratchPool(max_kept_bytes=32 << 20)
