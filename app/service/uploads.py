"""Hashing of uploaded files, a bounded number at once."""

import hashlib
import threading
import time
from dataclasses import dataclass

from prometheus_client import Histogram

from app.imaging import ImageHashes, hash_image_bytes
from app.validation import check_file_size


@dataclass(frozen=True, slots=True)
class Upload:
    """An uploaded file once hashed: its hashes and the SHA-256 of its bytes."""

    hashes: ImageHashes
    sha256: str


class UploadHasher:
    """Hashes uploads; at most `max_concurrent_decodes` are decoded at once, each up to `max_pixels`
    (request threads, up to 40, would otherwise all decode at once)."""

    def __init__(
        self,
        *,
        max_pixels: int,
        max_concurrent_decodes: int,
        hash_seconds: Histogram,
        decode_wait_seconds: Histogram,
    ) -> None:
        self.max_pixels = max_pixels
        self._decode_slots = threading.BoundedSemaphore(max_concurrent_decodes)
        self._hash_seconds = hash_seconds
        self._decode_wait_seconds = decode_wait_seconds

    def hash(self, data: bytes) -> Upload:
        """Hash an uploaded file; raises the hashing module's image errors. Waits for a decode slot."""
        arrived = time.perf_counter()
        with self._decode_slots:
            started = time.perf_counter()
            self._decode_wait_seconds.observe(started - arrived)
            try:
                hashes = hash_image_bytes(data, max_pixels=self.max_pixels)
            finally:
                self._hash_seconds.observe(time.perf_counter() - started)
        return Upload(hashes, hashlib.sha256(data).hexdigest())

    def hash_file(self, data: bytes, max_bytes: int) -> Upload:
        """`hash` for a file of a batch, refused (ImageTooLarge) when over `max_bytes`."""
        return self.hash(check_file_size(data, max_bytes))
