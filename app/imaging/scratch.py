"""Scratch memory lent to one hash at a time and taken back, instead of allocated afresh.

An array over glibc's mmap threshold (128 KiB by default, 8 MiB in the server, see
app/service/memory.py) is mapped straight from the kernel and faulted in page by page on first
touch, on every call: for the grey copy of a 16-megapixel photo (16 MiB) that cost 5-15 ms, a third
of the hash's own work, and half of a 0.4 ms resize of a 400x400 image. A lent buffer has been
touched before. Smaller needs come from glibc's heap, whose pages stay mapped, so they are not
pooled. The buffers kept hold at most `max_kept_bytes` in all: the largest are kept first, since
they cost the most to fault in.
"""

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np


class ScratchPool:
    """Buffers lent as arrays of any shape and dtype, whose content is undefined."""

    def __init__(self, max_kept_bytes: int, min_lent_bytes: int = 128 << 10) -> None:
        self.max_kept_bytes = max_kept_bytes
        self.min_lent_bytes = min_lent_bytes
        self._free: list[np.ndarray] = []  # uint8, smallest first
        self._lock = threading.Lock()

    @contextmanager
    def lend(self, shape: tuple[int, ...], dtype: type[np.generic]) -> Iterator[np.ndarray]:
        """An array of `shape` and `dtype`, the caller's until the block ends (not after)."""
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        if nbytes < self.min_lent_bytes:
            yield np.empty(shape, dtype=dtype)
            return
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
            for n, buffer in enumerate(self._free):  # the smallest that is large enough
                if buffer.size >= nbytes:
                    return self._free.pop(n)
        return np.empty(nbytes, dtype=np.uint8)

    def _give_back(self, buffer: np.ndarray) -> None:
        if buffer.size > self.max_kept_bytes:
            return
        with self._lock:
            self._free.append(buffer)
            self._free.sort(key=len)
            kept = sum(free.size for free in self._free)
            while kept > self.max_kept_bytes:
                kept -= self._free.pop(0).size


# The process's pool: enough for two 32-megapixel images (grey 32 MiB, resize blocks 2 MiB each).
SCRATCH = ScratchPool(max_kept_bytes=64 << 20)
