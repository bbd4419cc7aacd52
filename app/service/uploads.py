"""Hashing of uploaded files, a bounded number at once."""

import hashlib
import logging
import threading
import time
from dataclasses import dataclass

from prometheus_client import Histogram

from app.imaging import ImageHashes, hash_image_bytes, thumbnail_webp
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
    """Hashes uploads; at most `max_concurrent_decodes` are decoded at once, each up to `max_pixels`
    (request threads, up to 40, would otherwise all decode at once)."""

    def __init__(
        self,
        *,
        max_pixels: int,
        max_concurrent_decodes: int,
        hash_seconds: Histogram,
        decode_wait_seconds: Histogram,
        thumbnails: bool = False,
    ) -> None:
        self.max_pixels = max_pixels
        self.thumbnails = thumbnails
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
                thumbnail = self._thumbnail(data) if self.thumbnails else None
            finally:
                self._hash_seconds.observe(time.perf_counter() - started)
        return Upload(hashes, hashlib.sha256(data).hexdigest(), thumbnail)

    def hash_file(self, data: bytes, max_bytes: int) -> Upload:
        """`hash` for a file of a batch, refused (ImageTooLarge) when over `max_bytes`."""
        return self.hash(check_file_size(data, max_bytes))

    @staticmethod
    def _thumbnail(data: bytes) -> bytes | None:
        try:
            return thumbnail_webp(data)
        except Exception as exc:  # an image that hashes is stored even if it cannot be shown
            logger.warning("no thumbnail for an upload: %r", exc)
            return None
