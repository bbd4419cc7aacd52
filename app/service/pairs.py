"""The pairs of duplicates among the stored images, at the default threshold, kept in memory by a
thread that follows the store's log one step behind the index.

When it applies the add at position p, it searches the indexes for p's hashes (the whole
picture's and its cuts' dHashes and DCT hashes, the centre's dHash) and keeps the hits q < p:
each pair is found once, from its later image, whatever else the index holds by then (an image
deleted since is dropped with its tombstone). Every replica so ends with the same pairs.
Pairs are kept unconfirmed, with their DCT distance, so `confirm=false` is served from them too.

The pairs at any position are those among the images stored then: they are saved beside the index
snapshots (at stop and every snapshot interval), and a start loads them and follows the log from
there. Without a snapshot a start rebuilds them, in the background: one index search per image.
"""

import json
import logging
import threading
import time
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from app.errors import StoreUnavailable
from app.image_index import ImageIndex
from app.imaging import MAX_CUTS, hamming
from app.models import ImageRecord
from app.service.matching import Matching, parts_of, parts_score, whole_reach
from app.service.sync import IndexSyncer, Snapshots
from app.store import ImageStore
from app.store.base import StoredHashes

logger = logging.getLogger("doppel")

# Log positions applied at once, and index queries made at once: bound the memory of a rebuild.
WINDOW = 100_000
SEARCH_CHUNK = 1_000  # also how soon a stop is heard during a rebuild
RECORDS_CHUNK = 1_000
# The hashes by which pairs are found, saved with the pairs: a snapshot of pairs found otherwise
# (by an older Doppel, which indexed fewer cuts) lacks some, and is rebuilt rather than loaded.
FOUND_BY = f"whole and cut dHash, whole and cut DCT hash, centre dHash; {MAX_CUTS} cuts an image"


@dataclass(frozen=True, slots=True)
class Pair:
    """Two stored images whose hashes (the whole pictures' or cuts' dHashes or DCT hashes, or the
    centres' dHashes) are within the threshold: `a` the earlier key. `distance` is the whole
    pictures' dHash distance, `reach` the nearest of them all."""

    a: int
    b: int
    a_id: str
    b_id: str
    distance: int
    dct_distance: int | None
    exact: bool
    score: float  # app/service/matching.py's score of the two
    reach: int


@dataclass(frozen=True, slots=True)
class PairsStatus:
    """`complete`: the pairs cover the store (the rebuild at start is done); `progress` 0-1."""

    complete: bool
    progress: float


class DuplicatePairs:
    """Candidate pairs (the whole pictures' or cuts' dHashes or DCT hashes, or the centres' dHashes, within
    the matching's `max_distance`) among the stored images."""

    def __init__(
        self,
        store: ImageStore,
        index: ImageIndex,
        syncer: IndexSyncer,
        matching: Matching,
        *,
        interval_s: float,
        snapshots: Snapshots | None = None,
        snapshot_interval_s: float = 0,
    ) -> None:
        self.store = store
        self.index = index
        self.syncer = syncer
        self.matching = matching
        self.position = 0
        self._interval_s = interval_s
        self._snapshots = snapshots
        self._snapshot_interval_s = snapshot_interval_s
        self._saved_position: int | None = None
        self._saved_at = time.monotonic()
        self._pairs: dict[int, dict[int, Pair]] = {}  # key -> the other key -> their pair
        self._lock = threading.Lock()
        self._reached = threading.Condition(self._lock)
        self._complete = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def max_distance(self) -> int:
        return self.matching.max_distance

    def start(self) -> None:
        """Build the pairs in a thread of their own (the server answers meanwhile), then follow."""
        self._thread = threading.Thread(target=self._follow, name="doppel-pairs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the log and save a snapshot of the pairs."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._save_snapshot()

    def status(self) -> PairsStatus:
        target = self.syncer.position
        progress = 1.0 if target == 0 or self._complete else min(self.position / target, 1.0)
        return PairsStatus(complete=self._complete, progress=progress)

    def current(self, timeout_s: float) -> list[Pair]:
        """Every pair, once they cover what the index holds now (waiting up to `timeout_s` when
        the rebuild is done: a client finds the writes that answered it)."""
        target = self.syncer.position
        self._wake.set()
        with self._reached:
            if self._complete:
                self._reached.wait_for(lambda: self.position >= target, timeout_s)
            # each pair is listed under both its keys: take it once, under its first
            return [pair for key, pairs in self._pairs.items() for pair in pairs.values() if pair.a == key]

    def _follow(self) -> None:
        failing = False
        while not self._stopping.is_set():
            try:
                if self._saved_position is None:
                    self._load()
                self._catch_up()
            except Exception as exc:  # the store away, or a fault: keep trying
                if not failing:
                    detail = exc.detail if isinstance(exc, StoreUnavailable) else repr(exc)
                    logger.error("the duplicate pairs cannot follow the store: %s", detail)
                failing = True
            else:
                failing = False
            if self._snapshot_interval_s and time.monotonic() - self._saved_at >= self._snapshot_interval_s:
                self._save_snapshot()
            self._wake.wait(self._interval_s)
            self._wake.clear()

    def _load(self) -> None:
        """Start from the newest snapshot of the pairs at the same threshold, if any."""
        self._saved_position = 0
        snapshot = self._snapshots.latest(at_most=self.store.head()) if self._snapshots else None
        if snapshot is None:
            return
        path, position = snapshot
        try:
            saved = json.loads(path.read_text(encoding="utf-8"))
            if saved["max_distance"] != self.max_distance:
                raise ValueError(f"made for max_distance {saved['max_distance']}")
            if saved.get("found_by") != FOUND_BY:
                raise ValueError(f"found by {saved.get('found_by', 'whole and centre dHashes')}")
            pairs = [Pair(*row) for row in saved["pairs"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("duplicate pairs snapshot %s not loaded (%s): rebuilding them", path.name, exc)
            return
        with self._lock:
            for pair in pairs:
                self._pairs.setdefault(pair.a, {})[pair.b] = pair
                self._pairs.setdefault(pair.b, {})[pair.a] = pair
            self.position = self._saved_position = position
        logger.info("duplicate pairs loaded from %s at log position %d", path.name, position)

    def _save_snapshot(self) -> None:
        self._saved_at = time.monotonic()
        if self._snapshots is None or self._saved_position in (None, self.position) or self.position == 0:
            return
        with self._lock:
            position = self.position
            rows = [
                astuple(pair)
                for key, pairs in self._pairs.items()
                for pair in pairs.values()
                if pair.a == key
            ]

        def write(path: Path) -> None:
            saved = {"max_distance": self.max_distance, "found_by": FOUND_BY, "pairs": rows}
            path.write_text(json.dumps(saved), encoding="utf-8")

        try:
            self._snapshots.save(write, position)
        except OSError as exc:  # a full or read-only disk costs a slower start, nothing else
            logger.warning("duplicate pairs snapshot not saved: %s", exc)
            return
        self._saved_position = position

    def _catch_up(self) -> None:
        # Never past the index: a new image's earlier duplicates must all be in it.
        target = self.syncer.position
        while self.position < target and not self._stopping.is_set():
            upto = min(target, self.position + WINDOW)
            changes = self.store.changes(self.position, upto)
            found = self._pairs_of(changes.added)
            if found is None:  # stopping: the position stays where its pairs are whole
                return
            with self._lock:
                for pair in found:
                    self._pairs.setdefault(pair.a, {})[pair.b] = pair
                    self._pairs.setdefault(pair.b, {})[pair.a] = pair
                for key in changes.removed_keys.tolist():
                    for other in self._pairs.pop(key, {}):
                        partners = self._pairs.get(other)
                        if partners is not None:
                            partners.pop(key, None)
                            if not partners:
                                del self._pairs[other]
                self.position = upto
                self._reached.notify_all()
        if not self._complete and self.position >= target:
            with self._lock:
                self._complete = True
                self._reached.notify_all()
            # After a load too: the pairs are now whole up to the store's head, whichever way they came.
            logger.info(
                "duplicate pairs up to date at log position %d: %d images have candidates",
                self.position,
                len(self._pairs),
            )

    def _pairs_of(self, new: StoredHashes) -> list[Pair] | None:
        """The pairs each new image makes with the earlier images the index holds; None when
        stopping meanwhile."""
        candidates: set[tuple[int, int]] = set()
        for near, keys, hashes in (
            (self.index.wholes_near, *_and_cuts(new.keys, new.hashes, new.cut_keys, new.cut_hashes)),
            (self.index.dcts_near, *_and_cuts(new.dct_keys, new.dct_hashes, new.cut_keys, new.cut_dcts)),
            (self.index.centres_near, new.centre_keys, new.centre_hashes),
        ):
            for start in range(0, len(keys), SEARCH_CHUNK):
                chunk_keys = keys[start : start + SEARCH_CHUNK].tolist()
                hits = near(hashes[start : start + SEARCH_CHUNK].tolist(), max_distance=self.max_distance)
                for key, found in zip(chunk_keys, hits, strict=True):
                    candidates.update((other, key) for other, _ in found if other < key)
                if self._stopping.is_set():
                    return None
        wanted = sorted({key for pair in candidates for key in pair})
        records: dict[int, ImageRecord] = {}
        for start in range(0, len(wanted), RECORDS_CHUNK):
            records |= self.store.get_by_keys(wanted[start : start + RECORDS_CHUNK])
        pairs = []
        for a, b in sorted(candidates):
            first, second = records.get(a), records.get(b)
            if first is not None and second is not None:  # else deleted since: its tombstone follows
                pairs.append(pair_of(first, second))
        return pairs


def _and_cuts(
    keys: np.ndarray, hashes: np.ndarray, cut_keys: np.ndarray, cut_hashes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The whole pictures' keys and hashes, then the cuts'."""
    return np.concatenate([keys, cut_keys]), np.concatenate([hashes, cut_hashes])


def pair_of(a: ImageRecord, b: ImageRecord) -> Pair:
    """The pair of two stored images, `a` the earlier."""
    dct_distance = None if a.dct_hash is None or b.dct_hash is None else hamming(a.dct_hash, b.dct_hash)
    distance = hamming(a.dhash, b.dhash)
    centres = (
        None if a.centre_dhash is None or b.centre_dhash is None else hamming(a.centre_dhash, b.centre_dhash)
    )
    reach = min(whole_reach(parts_of(a), parts_of(b)), 64 if centres is None else centres)
    exact = a.sha256 is not None and a.sha256 == b.sha256
    return Pair(
        a.key,
        b.key,
        a.id,
        b.id,
        distance,
        dct_distance,
        exact,
        parts_score(parts_of(b), a),
        reach,
    )
