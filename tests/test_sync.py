"""The index syncer: it loads a snapshot of its own store (never another's, never one ahead of the
store), rebuilds when it cannot, catches up with what other processes wrote meanwhile, and says
when it stops following the store."""

import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from app.errors import StoreUnavailable
from app.image_index import SNAPSHOT_MAGIC, ImageIndex
from app.imaging import HASHING_VERSION
from app.imaging.hashing import Signature
from app.index import HammingIndex
from app.models import NewImage
from app.service import DoppelService, build_service
from app.service.matching import SearchOptions
from app.service.sync import IndexSyncer, Snapshots
from app.store import MemoryImageStore, open_store


def hashes(n: int, seed: int) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    return {f"s{seed}-{i}": int(h) for i, h in enumerate(rng.integers(0, 2**63, n, dtype=np.int64))}


def write(settings: Settings, images: dict[str, int]) -> None:
    """Add images through a store object of its own, as another process would."""
    store = open_store(settings)
    with store.writing() as transaction:
        transaction.add(
            [
                NewImage(id=k, dhash=v, width=None, height=None, hashing_version=HASHING_VERSION)
                for k, v in images.items()
            ]
        )
    store.close()


def centred(image_id: str, *, dhash: int, centre: int, dct: int | None = None) -> NewImage:
    return NewImage(
        id=image_id,
        dhash=dhash,
        width=None,
        height=None,
        dct_hash=dct,
        centre_dhash=centre,
        centre_vertical=centre,
        centre_dct=centre,
        hashing_version=HASHING_VERSION,
    )


def finds(service: DoppelService, image_id: str, dhash: int) -> bool:
    found = service.matching.search_hash(Signature(dhash, None, None), options=SearchOptions(max_distance=0))
    return image_id in [m.record.id for m in found]


@pytest.fixture
def started(settings: Settings) -> Iterator[DoppelService]:
    service = build_service(settings)
    service.start()
    yield service
    service.close()


def snapshot_files(settings: Settings) -> list[Path]:
    return sorted((settings.data_dir / "snapshots").glob("*.faiss"))


def test_a_restart_loads_the_snapshot_and_reads_only_the_changes_since(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = hashes(50, 1)
    write(settings, first)
    service = build_service(settings)
    service.start()
    with caplog.at_level(logging.INFO, logger="doppel"):
        service.close()
    assert [p.name.rsplit("-", 1)[1] for p in snapshot_files(settings)] == [f"{50:020d}.faiss"]
    saved = snapshot_files(settings)[0].name
    assert f"index saved to {saved} at log position 50" in caplog.text

    later = hashes(5, 2)
    write(settings, later)  # while the service is down
    other_process = open_store(settings)
    with other_process.writing() as transaction:
        transaction.delete("s1-0")
    other_process.close()

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt from the store instead of loading the snapshot")

    monkeypatch.setattr(type(other_process), "iter_hashes", no_rebuild)
    again = build_service(settings)
    again.start()
    try:
        assert again.count() == 54
        assert again.syncer.position == 56  # 55 adds and one delete
        assert finds(again, "s2-4", later["s2-4"])
        assert not finds(again, "s1-0", first["s1-0"])
    finally:
        again.close()


def test_a_snapshot_ahead_of_the_store_is_not_loaded(sqlite_settings: Settings, tmp_path: Path) -> None:
    """A database restored from an older backup: the index is rebuilt from what the store holds."""
    settings = sqlite_settings
    assert settings.database_path is not None
    write(settings, hashes(10, 1))
    backup = tmp_path / "backup.sqlite3"
    shutil.copy(settings.database_path, backup)
    write(settings, hashes(10, 2))
    service = build_service(settings)
    service.start()
    service.close()  # a snapshot at position 20
    shutil.copy(backup, settings.database_path)
    for stale in ("-wal", "-shm"):
        Path(f"{settings.database_path}{stale}").unlink(missing_ok=True)

    again = build_service(settings)
    again.start()
    try:
        assert again.count() == 10
        assert again.syncer.position == 10
        assert not finds(again, "s2-0", hashes(10, 2)["s2-0"])
    finally:
        again.close()


def test_another_stores_snapshot_is_never_loaded(settings: Settings, tmp_path: Path) -> None:
    other = Settings(data_dir=tmp_path / "other")
    write(other, hashes(30, 3))
    service = build_service(other)
    service.start()
    service.close()
    (settings.data_dir / "snapshots").mkdir(parents=True)
    for path in snapshot_files(other):
        shutil.copy(path, settings.data_dir / "snapshots" / path.name)

    write(settings, hashes(4, 4))
    mine = build_service(settings)
    mine.start()
    try:
        assert mine.count() == 4
    finally:
        mine.close()


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda data: data[:100], "truncated"),
        # as saved before hashing version 6: the same indexes, their cuts keyed for two an image
        (lambda data: data[len(SNAPSHOT_MAGIC) :], "does not hold a snapshot of this version's indexes"),
    ],
    ids=["damaged", "of an older layout"],
)
def test_a_damaged_or_older_snapshot_is_replaced_by_a_rebuild(
    settings: Settings, caplog: pytest.LogCaptureFixture, mangle: Callable[[bytes], bytes], reason: str
) -> None:
    write(settings, hashes(20, 5))
    service = build_service(settings)
    service.start()
    service.close()
    (snapshot,) = snapshot_files(settings)
    snapshot.write_bytes(mangle(snapshot.read_bytes()))

    again = build_service(settings)
    with caplog.at_level(logging.WARNING, logger="doppel"):
        again.start()
    try:
        assert again.count() == 20
        assert "not loaded" in caplog.text and snapshot.name in caplog.text and reason in caplog.text
    finally:
        again.close()


def test_writes_of_another_process_reach_the_index(settings: Settings, started: DoppelService) -> None:
    images = hashes(3, 6)
    write(settings, images)
    deadline = time.monotonic() + 60  # only stops a hung run
    while started.count() < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(finds(started, k, v) for k, v in images.items())
    assert started.syncer.status().position == 3


def test_the_lag_grows_while_the_store_is_away(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryImageStore()
    syncer = IndexSyncer(store, ImageIndex(), interval_s=0.01)
    syncer.start()
    try:
        status = syncer.status()
        assert status.loaded and status.lag_ms is not None

        def away() -> int:
            raise StoreUnavailable("the database is away")

        monkeypatch.setattr(store, "head", away)
        first = syncer.status().lag_ms
        assert first is not None
        time.sleep(0.2)  # polls fail meanwhile: nothing refreshes the lag
        later = syncer.status().lag_ms
        assert later is not None and later >= first + 150
        assert not syncer.wait_for(syncer.position + 1, timeout_s=0.05)
    finally:
        syncer.stop()


def test_snapshots_keep_only_the_newest_of_a_store(tmp_path: Path) -> None:
    snapshots = Snapshots(tmp_path, "abc")
    index = HammingIndex()
    index.add([1], [5])
    snapshots.save(index.save, 1)
    index.add([2], [6])
    newest = snapshots.save(index.save, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [newest.name]
    assert snapshots.latest(at_most=2) == (newest, 2)
    assert snapshots.latest(at_most=1) is None


def test_the_index_follows_the_store_while_a_snapshot_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A periodic snapshot (seconds at 100M) is written beside the syncer, not in its way; it holds
    the index as of the position it was taken at, and the stop writes the final one."""
    store = MemoryImageStore()
    snapshots = Snapshots(tmp_path, store.identity)
    writing = threading.Event()
    release = threading.Event()
    real_save = Snapshots.save

    def slow_save(self: Snapshots, write: Callable[[Path], None], position: int) -> Path:
        writing.set()
        assert release.wait(30)
        return real_save(self, write, position)

    monkeypatch.setattr(Snapshots, "save", slow_save)
    with store.writing() as transaction:
        (first,) = transaction.add([centred("first", dhash=1, centre=3, dct=5)])
    syncer = IndexSyncer(store, ImageIndex(), interval_s=0.01, snapshots=snapshots, snapshot_interval_s=0.01)
    syncer.start()
    try:
        assert writing.wait(30)
        with store.writing() as transaction:
            (later,) = transaction.add([centred("later", dhash=2, centre=4, dct=6)])
            position = transaction.position
        assert syncer.wait_for(position, timeout_s=30)
    finally:
        release.set()
        syncer.stop()
    latest = snapshots.latest(at_most=position)
    assert latest is not None and latest[1] == position
    loaded = ImageIndex()
    loaded.load(latest[0])
    assert len(loaded) == 2
    # every index: of the whole pictures' dHashes, of their DCT hashes and of the centres'
    found = loaded.search([1, 2], [5, 6], [3, 4], max_distance=0)
    assert found.wholes == found.dcts == found.centres == [[(first.key, 0)], [(later.key, 0)]]
