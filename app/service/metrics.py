"""Prometheus metrics of one service: requests, hashing, decode-slot waits, index and store sizes.

Each service has a registry of its own (not prometheus_client's global one), so that several apps in
one process (tests) count apart. With several worker processes each counts its own requests.
"""

import threading
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from app.errors import StoreUnavailable
from app.image_index import ImageIndex
from app.store import ImageStore

# The store's count and size are read at most this often (seconds): a count(*) of 10M rows is no
# work for every scrape.
STORE_STATS_INTERVAL_S = 60.0
# Hashing a small image takes milliseconds, a 100-megapixel one seconds.
_HASH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The service's metrics, in `registry`."""

    def __init__(self, index: ImageIndex, store: ImageStore) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "doppel_http_requests",
            "HTTP requests answered, by method, route (its template, e.g. /images/{image_id}) and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "doppel_http_request_duration_seconds",
            "Time from a request's arrival to the end of its answer, by method and route.",
            ["method", "route"],
            registry=self.registry,
        )
        self.hash_seconds = Histogram(
            "doppel_hash_duration_seconds",
            "Time to decode and hash one uploaded image, its wait for a decode slot left out.",
            buckets=_HASH_BUCKETS,
            registry=self.registry,
        )
        self.decode_wait_seconds = Histogram(
            "doppel_decode_slot_wait_seconds",
            "Time an upload waited for decode memory (DOPPEL_MAX_DECODE_MEMORY) and a decode slot "
            "(DOPPEL_MAX_CONCURRENT_DECODES).",
            buckets=_HASH_BUCKETS,
            registry=self.registry,
        )
        index_images = Gauge(
            "doppel_index_images", "Images in this process's in-memory index.", registry=self.registry
        )
        index_images.set_function(lambda: len(index))
        stats = _Every(STORE_STATS_INTERVAL_S, lambda: (store.count(), store.size_bytes()))
        store_images = Gauge(
            "doppel_store_images",
            f"Images in the store (read at most every {STORE_STATS_INTERVAL_S:.0f} s).",
            registry=self.registry,
        )
        store_images.set_function(lambda: stats.value()[0])
        store_bytes = Gauge(
            "doppel_store_bytes",
            "Bytes the store takes: SQLite's files, or PostgreSQL's tables with their indexes "
            f"(read at most every {STORE_STATS_INTERVAL_S:.0f} s).",
            registry=self.registry,
        )
        store_bytes.set_function(lambda: stats.value()[1])


class _Every:
    """A value read anew when it is older than `interval_s`; while the store is away, the last one."""

    def __init__(self, interval_s: float, read: Callable[[], tuple[int, int]]) -> None:
        self._interval_s = interval_s
        self._read = read
        self._lock = threading.Lock()
        self._value = (0, 0)
        self._read_at: float | None = None

    def value(self) -> tuple[int, int]:
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at >= self._interval_s:
                try:
                    self._value = self._read()
                    self._read_at = now
                except StoreUnavailable:
                    pass  # a scrape still answers; the store is read again at the next one
            return self._value
