"""The service and its one builder: the store, the index, the syncer that keeps the index equal to
the store, and the use cases on top (ingest, matching). Knows nothing of HTTP."""

import logging

from app.config import Settings
from app.errors import ImageNotFound, NoThumbnail
from app.image_index import ImageIndex
from app.imaging import HASHING_VERSION
from app.models import ImageRecord, Page
from app.service.duplicates import Duplicates
from app.service.ingest import Ingest
from app.service.matching import Matching
from app.service.memory import DecodeMemory
from app.service.metrics import Metrics
from app.service.pairs import DuplicatePairs
from app.service.rehash import count_older
from app.service.sync import IndexSyncer, Snapshots
from app.service.uploads import UploadHasher
from app.store import ImageStore, open_store
from app.store.migrations import SCHEMA_VERSION
from app.validation import check_image_id

logger = logging.getLogger("doppel")


class DoppelService:
    """Images in the store (the system of record) and their hashes in this process's index (a
    copy of it that follows its log). `start` loads the index; `close` saves it and lets go."""

    def __init__(
        self,
        store: ImageStore,
        syncer: IndexSyncer,
        ingest: Ingest,
        matching: Matching,
        duplicates: Duplicates,
        metrics: Metrics,
    ) -> None:
        self.store = store
        self.syncer = syncer
        self.ingest = ingest
        self.matching = matching
        self.duplicates = duplicates
        self.metrics = metrics

    def start(self) -> None:
        self.syncer.start()
        if self.duplicates.pairs is not None:
            self.duplicates.pairs.start()
        migrated = self.store.migrated_from
        logger.info(
            "store %s opened: %d images, log position %d, schema %d%s",
            self.store.describe(),
            self.count(),
            self.syncer.position,
            SCHEMA_VERSION,
            f" (migrated from schema {migrated})" if migrated else "",
        )
        older = count_older(self.store)
        if older:
            logger.warning(
                "%d records were hashed by an older version of Doppel's hashing than this one's (%d): "
                "they match with their old hashes; `python main.py rehash --from DIR` re-hashes those "
                "whose files you have",
                older,
                HASHING_VERSION,
            )

    def close(self) -> None:
        try:
            if self.duplicates.pairs is not None:
                self.duplicates.pairs.stop()
            self.syncer.stop()
        finally:
            self.store.close()

    def get(self, image_id: str) -> ImageRecord:
        record = self.store.get(check_image_id(image_id))
        if record is None:
            raise ImageNotFound(image_id)
        return record

    def thumbnail(self, image_id: str) -> bytes:
        """The stored image's thumbnail (WebP)."""
        image_id = check_image_id(image_id)
        thumbnail = self.store.thumbnail(image_id)
        if thumbnail is None:
            if self.store.get(image_id) is None:
                raise ImageNotFound(image_id)
            raise NoThumbnail(image_id)
        return thumbnail

    def page(self, *, limit: int, after: str | None) -> Page:
        """A page of records in id order; `next` is the cursor for the following page."""
        items = self.store.page(limit=limit + 1, after=after)
        has_more = len(items) > limit
        items = items[:limit]
        return Page(items=items, next=items[-1].id if has_more else None)

    def count(self) -> int:
        """The images this process's index holds."""
        return len(self.syncer.index)


def build_service(settings: Settings, store: ImageStore | None = None) -> DoppelService:
    """The service the settings describe, on `store` if given (else the configured one); call
    `start()` before use."""
    # Snapshots only of the configured store: one handed in is a test's or a throw-away one.
    snapshots = None
    if store is None:
        store = open_store(settings)
        snapshots = Snapshots(settings.data_dir / "snapshots", store.identity)
    index = ImageIndex()
    syncer = IndexSyncer(
        store,
        index,
        interval_s=settings.sync_interval_ms / 1000,
        snapshots=snapshots,
        snapshot_interval_s=settings.snapshot_interval_s,
    )
    metrics = Metrics(index, store)
    hasher = UploadHasher(
        max_pixels=settings.max_pixels,
        max_concurrent_decodes=settings.max_concurrent_decodes,
        memory=DecodeMemory(settings.max_decode_memory),
        hash_seconds=metrics.hash_seconds,
        decode_wait_seconds=metrics.decode_wait_seconds,
        thumbnails=settings.thumbnails,
    )
    matching = Matching(
        store, index, hasher, max_distance=settings.max_distance, max_score=settings.max_score
    )
    pairs = (
        DuplicatePairs(
            store,
            index,
            syncer,
            matching,
            interval_s=settings.sync_interval_ms / 1000,
            snapshots=Snapshots(snapshots.folder, store.identity, kind="pairs", suffix=".json")
            if snapshots
            else None,
            snapshot_interval_s=settings.snapshot_interval_s,
        )
        if settings.duplicate_groups
        else None
    )
    return DoppelService(
        store,
        syncer,
        Ingest(store, syncer, matching, hasher),
        matching,
        Duplicates(store, matching, pairs),
        metrics,
    )
