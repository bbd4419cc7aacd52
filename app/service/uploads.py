"""Hashing of uploaded files, within a memory budget and a number of decodes at once."""

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from prometheus_client import Histogram

from app.imaging import ImageHashes, hash_image_bytes, thumbnail_webp
from app.service.memory import DecodeMemory
from app.validation import check_file_size

logger = logging.getLogger("doppel")


@dataclass(frozen=True, slots=True)
class Upload:
    """An uploaded file once hashed: its hashes, the SHA-256 of its bytes, and its thumbnail (WebP;
    None when thumbnails are off or it could not be made)."""

    hashes: ImageHashes
    sha256: str
    thumbnail: bytes | None = None


class UploadHasher:
    """Hashes uploads, each up to `max_pixels`. A decode reserves its cost (from the image's
    header) from `memory` and takes one of `max_concurrent_decodes` slots (request threads, up to
    40, would otherwise all decode at once)."""

    def __init__(
        self,
        *,
        max_pixels: int,
        max_concurrent_decodes: int,
        memory: DecodeMemory,
        hash_seconds: Histogram,
        decode_wait_seconds: Histogram,
        thumbnails: bool = False,
    ) -> None:
        self.max_pixels = max_pixels
        self.thumbnails = thumbnails
        self._decode_slots = threading.BoundedSemaphore(max_concurrent_decodes)
        self._memory = memory
        self._hash_seconds = hash_seconds
        self._decode_wait_seconds = decode_wait_seconds

    def hash(self, data: bytes) -> Upload:
        """Hash an uploaded file; raises the hashing module's image errors, or ImageTooLarge when
        its decode could never fit the memory budget. Waits for memory and a decode slot."""
        # (wait, cost) of each decode admitted; none for a file refused from its header.
        admissions: list[tuple[float, int]] = []
        started = time.perf_counter()
        try:
            hashes = hash_image_bytes(
                data, max_pixels=self.max_pixels, while_decoding=partial(self._admitted, admissions)
            )
            thumbnail = None
            # A second decode: 1.3x the hash's for a flat RGB PNG (measured), so 1.5x is reserved;
            # an image whose thumbnail could never fit the budget is stored without one.
            thumbnail_cost = admissions[0][1] * 3 // 2
            if self.thumbnails and thumbnail_cost <= self._memory.capacity_bytes:
                with self._admitted(admissions, thumbnail_cost):
                    thumbnail = self._thumbnail(data)
        finally:
            waited = sum(wait for wait, _ in admissions)
            self._decode_wait_seconds.observe(waited)
            self._hash_seconds.observe(time.perf_counter() - started - waited)
        return Upload(hashes, hashlib.sha256(data).hexdigest(), thumbnail)

    def hash_file(self, data: bytes, max_bytes: int) -> Upload:
        """`hash` for a file of a batch, refused (ImageTooLarge) when over `max_bytes`."""
        return self.hash(check_file_size(data, max_bytes))

    @contextmanager
    def _admitted(self, admissions: list[tuple[float, int]], cost_bytes: int) -> Iterator[None]:
        arrived = time.perf_counter()
        # Memory first: a decode waiting for memory does not hold a slot another could use.
        with self._memory.reserve(cost_bytes), self._decode_slots:
            admissions.append((time.perf_counter() - arrived, cost_bytes))
            yield

    @staticmethod
    def _thumbnail(data: bytes) -> bytes | None:
        try:
            return thumbnail_webp(data)
        except Exception as exc:  # an image that hashes is stored even if it cannot be shown
            logger.warning("no thumbnail for an upload: %r", exc)
            return None
