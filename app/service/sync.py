"""The index syncer: the one writer of a process's index. It loads the index (from a snapshot in the
data folder, else from the store), then follows the store's change log, so that every process,
on every machine, serves the images the store holds, within a poll interval."""

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.errors import StoreUnavailable
from app.image_index import FrozenImageIndex, ImageIndex
from app.store import ImageStore
from app.store.base import StoredHashes

logger = logging.getLogger("doppel")

REBUILD_BATCH = 100_000
# Changes read from the store at once while catching up: bounds the memory of a long catch-up.
CATCH_UP_WINDOW = 100_000


@dataclass(frozen=True, slots=True)
class SyncStatus:
    """Where the index stands: loaded yet, the log position it holds, and how stale that may be."""

    loaded: bool
    position: int
    lag_ms: float | None  # time since the index last held the store's head; None before loading


class Snapshots:
    """Snapshots in a folder: `<kind>-<store identity>-<position><suffix>` (the index's, and the
    duplicate pairs'), written whole under a temporary name and renamed, so a reader never sees
    half a file."""

    def __init__(self, folder: Path, identity: str, *, kind: str = "index", suffix: str = ".faiss") -> None:
        self.folder = folder
        self._prefix = f"{kind}-{identity}-"
        self._suffix = suffix

    def latest(self, at_most: int) -> tuple[Path, int] | None:
        """The newest snapshot of this store at a position the store has reached, or None."""
        found = [(path, self._position(path)) for path in self.folder.glob(f"{self._prefix}*{self._suffix}")]
        usable = [
            (path, position) for path, position in found if position is not None and position <= at_most
        ]
        return max(usable, key=lambda item: item[1], default=None)

    def save(self, write: Callable[[Path], None], position: int) -> Path:
        """Write a snapshot at `position` with `write(path)`; older ones of this store are removed."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self._prefix}{position:020d}{self._suffix}"
        # A name of its own: other processes on this folder may be saving the same position.
        handle, name = tempfile.mkstemp(dir=self.folder, prefix=f".{path.name}.", suffix=".partial")
        os.close(handle)
        partial = Path(name)
        try:
            write(partial)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
        for older in self.folder.glob(f"{self._prefix}*{self._suffix}"):
            older_position = self._position(older)
            if older_position is not None and older_position < position:
                older.unlink(missing_ok=True)
        return path

    def _position(self, path: Path) -> int | None:
        digits = path.name.removesuffix(self._suffix).removeprefix(self._prefix)
        return int(digits) if digits.isdigit() else None


class IndexSyncer:
    """Keeps `index` equal to the store as of `position`. Only its thread changes the index after
    start(); writers wake it and wait for the position their commit reached."""

    def __init__(
        self,
        store: ImageStore,
        index: ImageIndex,
        *,
        interval_s: float,
        snapshots: Snapshots | None = None,
        snapshot_interval_s: float = 0,
    ) -> None:
        self.store = store
        self.index = index
        self.position = 0
        self._interval_s = interval_s
        self._snapshots = snapshots
        self._snapshot_interval_s = snapshot_interval_s
        self._saved_position: int | None = None
        self._saved_at = time.monotonic()
        self._synced_at: float | None = None
        self._reached = threading.Condition()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._saver: threading.Thread | None = None
        self._failing = False

    def start(self) -> None:
        """Load the index and catch up with the log (in the caller's thread), then follow it."""
        self._load()
        self.sync()
        self.store.on_change(self.wake)
        self._thread = threading.Thread(target=self._follow, name="doppel-index-sync", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the log and save a snapshot of what the index holds."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        if self._saver is not None:
            self._saver.join()
        if self._synced_at is not None:
            self._save_snapshot(self.index.frozen(), self.position)

    def wake(self) -> None:
        """Look for changes now instead of at the next poll."""
        self._wake.set()

    def wait_for(self, position: int, timeout_s: float) -> bool:
        """Wait until the index holds every change up to `position`; False if it did not in time."""
        if self.position >= position:
            return True
        self.wake()
        with self._reached:
            return self._reached.wait_for(lambda: self.position >= position, timeout_s)

    def status(self) -> SyncStatus:
        synced_at = self._synced_at
        lag_ms = None if synced_at is None else (time.monotonic() - synced_at) * 1000
        return SyncStatus(loaded=synced_at is not None, position=self.position, lag_ms=lag_ms)

    def sync(self) -> None:
        """Apply every change up to the store's head. Only the syncer's thread (or start) calls it."""
        started = time.monotonic()
        head = self.store.head()
        while self.position < head:
            upto = min(head, self.position + CATCH_UP_WINDOW)
            changes = self.store.changes(self.position, upto)
            self.index.add(changes.added)
            self.index.remove(changes.removed_keys)
            with self._reached:
                self.position = upto
                self._reached.notify_all()
        self._synced_at = started

    def _load(self) -> None:
        head = self.store.head()
        snapshot = self._snapshots.latest(at_most=head) if self._snapshots else None
        if snapshot is not None:
            path, position = snapshot
            try:
                self.index.load(path)
            except (RuntimeError, ValueError, OSError) as exc:  # faiss raises RuntimeError on a bad file
                logger.warning("index snapshot %s not loaded (%s): rebuilding from the store", path, exc)
            else:
                self.position = self._saved_position = position
                logger.info("index loaded from %s at log position %d", path.name, position)
                return
        # One add of everything: the index builds its tables once instead of merging batch by batch.
        batches = list(self.store.iter_hashes(REBUILD_BATCH, upto=head))
        if batches:
            self.index.add(
                StoredHashes(
                    *(np.concatenate([getattr(b, name) for b in batches]) for name in StoredHashes.__slots__)
                )
            )
        self.position = head

    def _follow(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.sync()
            except Exception as exc:  # the store away, or a fault: keep trying; readiness shows the lag
                if not self._failing:
                    detail = exc.detail if isinstance(exc, StoreUnavailable) else repr(exc)
                    logger.error("the index cannot follow the store: %s", detail)
                self._failing = True
                continue
            if self._failing:
                logger.info("the index follows the store again, at log position %d", self.position)
                self._failing = False
            if self._snapshot_interval_s and time.monotonic() - self._saved_at >= self._snapshot_interval_s:
                self._start_saving()

    def _start_saving(self) -> None:
        """Save a snapshot in a thread of its own: at 100M images it takes seconds, which the
        log's followers (readiness, writers waiting for their position) must not wait."""
        self._saved_at = time.monotonic()
        if self._saver is not None and self._saver.is_alive():
            return
        # Taken here, in the only thread that changes the index: the state and its position agree.
        args = (self.index.frozen(), self.position)
        self._saver = threading.Thread(target=self._save_snapshot, args=args, name="doppel-index-snapshot")
        self._saver.start()

    def _save_snapshot(self, index: FrozenImageIndex, position: int) -> None:
        if self._snapshots is None or self._saved_position == position or position == 0:
            return
        try:
            path = self._snapshots.save(index.save, position)
        except OSError as exc:  # a full or read-only disk costs a slower start, nothing else
            logger.warning("index snapshot not saved: %s", exc)
            return
        self._saved_position = position
        logger.info("index saved to %s at log position %d", path.name, position)
