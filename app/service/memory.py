"""Memory that stays bounded: decodes reserve their cost from a budget in bytes, and glibc's
allocator is told to give large blocks back to the system when they are freed."""

import ctypes
import ctypes.util
import platform
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from app.errors import ImageTooLarge

MB = 1_000_000
# mallopt parameters, from glibc's malloc.h.
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
# Under Pillow's 16 MiB image blocks, so that they are unmapped when freed; over the arrays of a
# photo's hash, which glibc's heaps then reuse instead of faulting in anew (128 KiB: hashing large
# photos took 1.5x as long).
MMAP_THRESHOLD_BYTES = 8 << 20
ARENAS = 2


class DecodeMemory:
    """A budget of bytes that decodes reserve for as long as they run: one that cannot fit even
    alone is refused (ImageTooLarge), the others wait their turn, first come first served."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._reserved = 0
        self._waiting: deque[object] = deque()
        self._changed = threading.Condition()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        """Hold `nbytes` of the budget for the block, waiting until they are free."""
        if nbytes > self.capacity_bytes:
            raise ImageTooLarge(
                f"decoding the image takes about {nbytes // MB} MB, over the limit of "
                f"{self.capacity_bytes // MB} MB for images being decoded (DOPPEL_MAX_DECODE_MEMORY)"
            )
        turn = object()
        with self._changed:
            self._waiting.append(turn)
            # In order of arrival: a large decode is not passed over forever by small ones.
            self._changed.wait_for(
                lambda: self._waiting[0] is turn and self._reserved + nbytes <= self.capacity_bytes
            )
            self._waiting.popleft()
            self._reserved += nbytes
            self._changed.notify_all()
        try:
            yield
        finally:
            with self._changed:
                self._reserved -= nbytes
                self._changed.notify_all()


def return_freed_memory() -> None:
    """Make glibc unmap freed blocks of 8 MiB and more at once and keep few heaps (no-op elsewhere).

    By default glibc raises its mmap threshold to the largest block freed (up to 32 MiB): after
    the first large image, Pillow's 16 MiB blocks come from per-thread heaps (up to 8 per core)
    that keep them. 16 searches of a 100-megapixel PNG, one decoded at a time, then peaked at
    5.7 GB and held 5.2 GB; with a fixed threshold, 0.6 GB and 0.1 GB (docs/reliability.md).
    """
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_ARENA_MAX, ARENAS)
