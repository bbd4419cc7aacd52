"""The ImageStore contract, run against every implementation: memory, SQLite and PostgreSQL (with
DOPPEL_TEST_DATABASE_URL set; skipped with the reason otherwise)."""

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pg
import psycopg
import pytest

from app.errors import ImageExists, StoreUnavailable
from app.imaging import HASHING_VERSION
from app.models import ImageRecord, NewImage
from app.store import ImageStore, MemoryImageStore, SQLiteImageStore
from app.store import postgres as postgres_store
from app.store.base import StoredHashes
from app.store.postgres import PostgresImageStore

HANG = 60  # seconds: only to stop a hung run, never a limit on how fast something must be


def image(image_id: str, dhash: int = 1, **fields: object) -> NewImage:
    return NewImage(id=image_id, dhash=dhash, width=10, height=20, hashing_version=HASHING_VERSION, **fields)  # type: ignore[arg-type]


def centred(image_id: str, dhash: int = 1, centre: int = 2) -> NewImage:
    """An image with its centre's hashes, as one hashed from pixels has."""
    return image(image_id, dhash, centre_dhash=centre, centre_vertical=3, centre_dct=4)


def assert_types(hashes: StoredHashes) -> None:
    assert hashes.keys.dtype == np.int64 and hashes.hashes.dtype == np.uint64
    assert hashes.centre_keys.dtype == np.int64 and hashes.centre_hashes.dtype == np.uint64
    assert hashes.dct_keys.dtype == np.int64 and hashes.dct_hashes.dtype == np.uint64
    assert hashes.cut_keys.dtype == np.int64
    assert hashes.cut_hashes.dtype == np.uint64 and hashes.cut_dcts.dtype == np.uint64


def centres(hashes: StoredHashes) -> list[tuple[int, int]]:
    return list(zip(hashes.centre_keys.tolist(), hashes.centre_hashes.tolist(), strict=True))


def add(store: ImageStore, *images: NewImage) -> list[ImageRecord]:
    with store.writing() as tx:
        return tx.add(list(images))


def delete(store: ImageStore, image_id: str) -> ImageRecord | None:
    with store.writing() as tx:
        return tx.delete(image_id)


def replace(store: ImageStore, new: NewImage) -> tuple[ImageRecord, ImageRecord | None]:
    with store.writing() as tx:
        return tx.replace(new)


class Database:
    """One database of one kind. `open()` gives another store object on it, as another process would
    open (memory: the one store object, as its data lives only there)."""

    def __init__(self, kind: str, where: Path | str | None) -> None:
        self.kind = kind
        self.where = where
        self._opened: list[ImageStore] = []

    @property
    def persistent(self) -> bool:
        return self.kind != "memory"

    def open(self) -> ImageStore:
        store: ImageStore
        if self.kind == "memory":
            if self._opened:
                return self._opened[0]
            store = MemoryImageStore()
        elif self.kind == "sqlite":
            assert isinstance(self.where, Path)
            store = SQLiteImageStore(self.where)
        else:
            assert isinstance(self.where, str)
            store = PostgresImageStore(self.where)
        self._opened.append(store)
        return store

    def close(self, store: ImageStore) -> None:
        """Close `store` as a process ending would."""
        self._opened.remove(store)
        store.close()

    def close_all(self) -> None:
        while self._opened:
            self.close(self._opened[-1])


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Database]]:
    """Makes new, empty databases of the parameter's kind; closes their stores after the test."""
    kind: str = request.param
    new_postgres_url = request.getfixturevalue("make_postgres_url") if kind == "postgres" else None
    made: list[Database] = []

    def make() -> Database:
        where: Path | str | None = None
        if kind == "sqlite":
            where = tmp_path / ("s.db" if not made else f"s{len(made)}.db")
        elif new_postgres_url is not None:
            where = new_postgres_url()
        made.append(Database(kind, where))
        return made[-1]

    try:
        yield make
    finally:
        for database in made:
            database.close_all()


@pytest.fixture
def database(new_database: Callable[[], Database]) -> Database:
    return new_database()


@pytest.fixture
def store(database: Database) -> ImageStore:
    return database.open()


def test_add_then_get_returns_every_field(store: ImageStore) -> None:
    new = image(
        "a",
        dhash=(1 << 64) - 1,
        metadata={"k": [1, "v"]},
        dhash_vertical=1 << 63,
        dct_hash=(1 << 63) - 1,
        sha256="ab" * 32,
    )
    (record,) = add(store, new)
    assert store.get("a") == record
    assert (record.id, record.dhash, record.dhash_vertical, record.dct_hash, record.sha256) == (
        "a",
        (1 << 64) - 1,
        1 << 63,
        (1 << 63) - 1,
        "ab" * 32,
    )
    assert (record.width, record.height, record.metadata) == (10, 20, {"k": [1, "v"]})
    assert record.created_at.endswith("Z")
    assert store.get("missing") is None


def test_a_hash_only_image_keeps_its_unknowns(store: ImageStore) -> None:
    (record,) = add(
        store, NewImage(id="h", dhash=0, width=None, height=None, hashing_version=HASHING_VERSION)
    )
    assert store.get("h") == record
    assert (record.width, record.height, record.dhash_vertical, record.dct_hash, record.sha256) == (None,) * 5
    assert record.metadata == {}


def test_metadata_comes_back_as_written(store: ImageStore) -> None:
    metadata = {"z": 1, "a": {"y": [1.5, 1e20, -0.0, 10**30]}, "nul": "a\u0000b", "": None, "é": True}
    add(store, image("a", metadata=metadata))
    stored = store.get("a")
    assert stored is not None
    assert stored.metadata == metadata
    assert repr(stored.metadata) == repr(metadata)  # key order, and floats stay floats


def test_keys_only_grow_and_are_never_reused(store: ImageStore) -> None:
    first, second = add(store, image("a"), image("b"))
    assert second.key > first.key
    delete(store, "b")
    (third,) = add(store, image("c"))
    assert third.key > second.key


def test_existing_or_repeated_ids_store_nothing(store: ImageStore) -> None:
    add(store, image("a"))
    with pytest.raises(ImageExists) as caught:
        add(store, image("new"), image("a"))
    assert caught.value.image_ids == ["a"]
    with pytest.raises(ImageExists):
        add(store, image("x"), image("x"))
    assert store.get("new") is None and store.get("x") is None
    assert store.count() == 1
    assert store.head() == 1


def test_replace_gives_a_new_key_and_returns_the_old_record(store: ImageStore) -> None:
    created, old = replace(store, image("a", dhash=5))
    assert old is None
    replaced, old = replace(store, image("a", dhash=6))
    assert old == created
    assert replaced.key > created.key
    assert store.get("a") == replaced
    assert store.count() == 1


def test_delete_returns_the_record_once(store: ImageStore) -> None:
    (record,) = add(store, image("a"))
    assert delete(store, "a") == record
    assert delete(store, "a") is None
    assert store.get_by_keys([record.key]) == {}
    assert store.get("a") is None


def test_a_thumbnail_is_kept_with_its_image_and_deleted_with_it(store: ImageStore) -> None:
    add(store, image("t", thumbnail=b"RIFF-one"), image("plain"))
    assert store.thumbnail("t") == b"RIFF-one"
    assert store.thumbnail("plain") is None
    assert store.thumbnail("missing") is None
    replace(store, image("t", thumbnail=b"RIFF-two"))
    assert store.thumbnail("t") == b"RIFF-two"
    replace(store, image("t"))  # a replacement without one leaves none of the old image's
    assert store.thumbnail("t") is None
    add(store, image("u", thumbnail=b"RIFF-three"))
    delete(store, "u")
    assert store.thumbnail("u") is None
    add(store, image("u"))  # the id again, without a thumbnail: the deleted one is not back
    assert store.thumbnail("u") is None


def test_a_rolled_back_block_stores_no_thumbnail_and_keeps_the_deleted_ones(store: ImageStore) -> None:
    add(store, image("kept", thumbnail=b"RIFF-kept"))
    with pytest.raises(RuntimeError), store.writing() as tx:
        tx.add([image("new", thumbnail=b"RIFF-new")])
        tx.delete("kept")
        raise RuntimeError("rolled back")
    assert store.thumbnail("new") is None
    assert store.thumbnail("kept") == b"RIFF-kept"


def test_thumbnails_survive_reopening(database: Database) -> None:
    first = database.open()
    add(first, image("t", thumbnail=bytes(range(256)) * 40))
    database.close(first)
    if database.persistent:
        assert database.open().thumbnail("t") == bytes(range(256)) * 40


def test_page_walks_ids_in_bytewise_order(store: ImageStore) -> None:
    add(store, *[image(i) for i in ["c", "a", "é", "b", "A", "Z", "_"]])
    assert [r.id for r in store.page(limit=3, after=None)] == ["A", "Z", "_"]
    assert [r.id for r in store.page(limit=2, after="_")] == ["a", "b"]
    assert [r.id for r in store.page(limit=10, after="b")] == ["c", "é"]
    assert store.page(limit=10, after="é") == []


def test_iter_hashes_yields_every_key_and_hash_in_batches(store: ImageStore) -> None:
    images = []
    for n in range(25):
        whole = (n * 0x9E3779B97F4A7C15) % (1 << 64)
        # every third with a centre, every second with a DCT hash, over 2^63 as well as under
        centre = (n * 0xC2B2AE3D27D4EB4F) % (1 << 64)
        fields = {"centre_dhash": centre, "centre_vertical": 3, "centre_dct": 4} if n % 3 == 0 else {}
        dct = {"dct_hash": (n * 0x165667B19E3779F9) % (1 << 64)} if n % 2 == 0 else {}
        # every fourth with two other cuts, the next with one
        cuts = tuple((whole ^ c, c, centre ^ c) for c in (1 << 63 | n, n)[: max(0, 2 - n % 4)])
        images.append(image(f"i{n}", whole, **fields, **dct, cuts=cuts))
    records = add(store, *images)
    assert store.get_by_keys([r.key for r in records]) == {r.key: r for r in records}
    assert records[0].cuts[0][1] >= 1 << 63 and len(records[1].cuts) == 1 and records[2].cuts == ()
    batches = list(store.iter_hashes(10, upto=store.head()))
    assert [len(batch.keys) for batch in batches] == [10, 10, 5]
    assert all(len(batch.hashes) == len(batch.keys) for batch in batches)
    for batch in batches:
        assert_types(batch)
        assert set(batch.centre_keys.tolist()) <= set(batch.keys.tolist())  # in their images' batch
    pairs = [(int(k), int(h)) for batch in batches for k, h in zip(batch.keys, batch.hashes, strict=True)]
    assert pairs == [(r.key, r.dhash) for r in records]
    expected_centres = [(r.key, r.centre_dhash) for r in records if r.centre_dhash is not None]
    assert [pair for batch in batches for pair in centres(batch)] == expected_centres
    assert len(expected_centres) == 9 and any(c >= 1 << 63 for _, c in expected_centres)
    expected_dcts = [(r.key, r.dct_hash) for r in records if r.dct_hash is not None]
    dcts = [pair for b in batches for pair in zip(b.dct_keys.tolist(), b.dct_hashes.tolist(), strict=True)]
    assert dcts == expected_dcts
    assert len(expected_dcts) == 13 and any(h >= 1 << 63 for _, h in expected_dcts)
    expected_cuts = [(r.key, dhash, dct) for r in records for dhash, _, dct in r.cuts]
    found_cuts = [
        cut
        for b in batches
        for cut in zip(b.cut_keys.tolist(), b.cut_hashes.tolist(), b.cut_dcts.tolist(), strict=True)
    ]
    assert found_cuts == expected_cuts and len(found_cuts) == 7 * 2 + 6


def test_iter_hashes_leaves_out_keys_after_upto(store: ImageStore) -> None:
    first = add(store, centred("a"), image("b"))
    upto = store.head()
    add(store, centred("c"))
    batches = list(store.iter_hashes(1, upto=upto))
    assert [int(k) for batch in batches for k in batch.keys] == [r.key for r in first]
    assert [pair for batch in batches for pair in centres(batch)] == [(first[0].key, 2)]
    assert list(store.iter_hashes(10, upto=0)) == []


def test_get_by_keys_leaves_out_unknown_keys(store: ImageStore) -> None:
    a, b = add(store, image("a"), image("b"))
    assert store.get_by_keys([b.key, 12345, a.key]) == {a.key: a, b.key: b}
    assert store.get_by_keys([]) == {}


def test_head_starts_at_zero_and_grows_by_one_per_image_and_per_delete(store: ImageStore) -> None:
    assert store.head() == 0
    with store.writing() as tx:
        assert (tx.head, tx.position) == (0, 0)
        records = tx.add([image("a"), image("b"), image("c")])
        assert (tx.head, tx.position) == (0, 3)
        tx.delete("b")
        assert tx.position == 4
        assert tx.delete("b") is None
        assert tx.add([]) == []
        assert tx.position == 4
    assert [r.key for r in records] == [1, 2, 3]  # an image's key is the position that added it
    assert store.head() == 4
    with store.writing() as tx:
        assert tx.head == 4
    assert store.head() == 4  # a block that writes nothing moves nothing


def test_replace_advances_head_by_two_and_a_first_replace_by_one(store: ImageStore) -> None:
    (created, _) = replace(store, image("a"))
    assert (store.head(), created.key) == (1, 1)
    replaced, old = replace(store, image("a", dhash=2))
    assert old == created
    assert (store.head(), replaced.key) == (3, 3)  # position 2 is the tombstone of key 1
    assert store.changes(1, 3).removed_keys.tolist() == [1]


def test_changes_returns_adds_and_tombstones_in_a_window_and_respects_upto(store: ImageStore) -> None:
    a, b = add(store, centred("a", dhash=(1 << 64) - 3), image("b", dhash=7))  # positions 1, 2
    delete(store, "a")  # 3: removes key 1
    (c,) = add(store, centred("c", dhash=9, centre=(1 << 64) - 5))  # 4
    delete(store, "b")  # 5: removes key 2

    changes = store.changes(0, 5)
    assert_types(changes.added)
    assert changes.removed_keys.dtype == np.int64
    assert changes.added.keys.tolist() == [c.key]  # a and b are deleted: their rows are gone
    assert changes.added.hashes.tolist() == [9]
    assert centres(changes.added) == [(c.key, (1 << 64) - 5)]
    assert sorted(changes.removed_keys.tolist()) == [a.key, b.key]

    window = store.changes(1, 4)
    assert window.added.keys.tolist() == [c.key]
    assert centres(window.added) == [(c.key, (1 << 64) - 5)]
    assert window.removed_keys.tolist() == [a.key]

    early = store.changes(0, 2)  # upto leaves out the later tombstones and the later image
    assert early.added.keys.tolist() == []
    assert centres(early.added) == []
    assert early.removed_keys.tolist() == []
    last = store.changes(5, 5)
    assert last.added.keys.tolist() == [] and centres(last.added) == []
    assert_types(last.added)


def test_changes_carry_the_cuts_of_the_images_added(store: ImageStore) -> None:
    cut = ((1 << 64) - 1, 2, 3)
    plain, with_cuts = add(store, image("plain"), image("cut", cuts=(cut, (4, 5, 6))))
    (gone,) = add(store, image("gone", cuts=((7, 8, 9),)))
    delete(store, "gone")
    changes = store.changes(0, store.head())
    assert_types(changes.added)
    assert changes.added.cut_keys.tolist() == [with_cuts.key] * 2
    assert changes.added.cut_hashes.tolist() == [(1 << 64) - 1, 4]
    assert changes.added.cut_dcts.tolist() == [3, 6]
    assert changes.removed_keys.tolist() == [gone.key]
    assert store.changes(0, plain.key).added.cut_keys.tolist() == []


def test_changes_up_to_a_position_leave_out_later_images(store: ImageStore) -> None:
    (a,) = add(store, image("a", dhash=(1 << 64) - 1))
    (b,) = add(store, centred("b", centre=(1 << 64) - 1))
    changes = store.changes(0, 1)
    assert changes.added.keys.tolist() == [a.key]
    assert changes.added.hashes.tolist() == [(1 << 64) - 1]
    assert centres(changes.added) == []  # a has no centre, and b's comes later
    assert changes.removed_keys.tolist() == []
    both = store.changes(0, 2)
    assert both.added.keys.tolist() == [a.key, b.key]
    assert centres(both.added) == [(b.key, (1 << 64) - 1)]  # only the image with a centre


def test_an_image_added_and_deleted_in_one_window_is_removed(store: ImageStore) -> None:
    (kept,) = add(store, centred("kept"))
    with store.writing() as tx:
        (gone,) = tx.add([centred("gone")])
        tx.delete("gone")
    changes = store.changes(0, store.head())
    assert gone.key in changes.removed_keys.tolist()
    # Apply as the Changes docstring says: additions first, then removals. Whether or not its row
    # was read, the image is gone afterwards.
    applied = set(changes.added.keys.tolist()) - set(changes.removed_keys.tolist())
    assert applied == {kept.key}
    applied_centres = set(changes.added.centre_keys.tolist()) - set(changes.removed_keys.tolist())
    assert applied_centres == {kept.key}


def test_a_block_that_raises_stores_nothing_and_leaves_head_unchanged(store: ImageStore) -> None:
    add(store, image("a"))
    with pytest.raises(RuntimeError), store.writing() as tx:
        tx.add([image("b")])
        tx.delete("a")
        tx.replace(image("c"))
        raise RuntimeError("the caller gives up")
    assert store.head() == 1
    assert store.get("a") is not None
    assert store.get("b") is None and store.get("c") is None
    assert store.count() == 1
    assert store.changes(0, 10).removed_keys.tolist() == []
    (later,) = add(store, image("d"))
    assert later.key == 2  # the rolled back positions are taken again: they were never committed


def test_image_exists_in_a_block_rolls_back_its_earlier_writes(store: ImageStore) -> None:
    add(store, image("a"), image("b"))
    with pytest.raises(ImageExists) as caught, store.writing() as tx:
        tx.add([image("c")])
        tx.delete("b")
        tx.add([image("d"), image("a")])
    assert caught.value.image_ids == ["a"]
    assert store.head() == 2
    assert [r.id for r in store.page(limit=10, after=None)] == ["a", "b"]


def test_describe_names_the_store(store: ImageStore) -> None:
    assert store.describe()


def test_size_bytes_grows_with_what_is_stored(database: Database) -> None:
    store = database.open()
    before = store.size_bytes()
    add(store, *(image(f"i{n}", n, metadata={"pad": "x" * 1000}) for n in range(300)))
    if database.persistent:
        assert store.size_bytes() >= before + 300 * 1000
    else:
        assert store.size_bytes() == 0  # a memory store keeps nothing on disk


def test_postgres_describe_leaves_out_the_password(postgres_url: str) -> None:
    # Trust authentication: the server accepts the URL and ignores its password.
    user, at, rest = postgres_url.partition("://")[2].rpartition("@")
    secret = "s3cret-pw"
    url = f"postgresql://{user.partition(':')[0] or 'postgres'}:{secret}@{rest}"
    store = PostgresImageStore(url + "&password=" + secret)
    try:
        assert secret not in store.describe()
        assert rest.split("?")[0] in store.describe()
    finally:
        store.close()


def test_identity_is_stable_across_reopening_and_differs_between_stores(
    new_database: Callable[[], Database],
) -> None:
    database, other = new_database(), new_database()
    first = database.open()
    identity = first.identity
    assert identity and identity != other.open().identity
    if not database.persistent:
        return
    database.close(first)
    assert database.open().identity == identity
    assert database.open().identity == identity


def test_records_survive_reopening(database: Database) -> None:
    if not database.persistent:
        pytest.skip("a memory store keeps nothing")
    first = database.open()
    (record,) = add(first, image("a", metadata={"x": 1}))
    delete(first, "a")
    (b,) = add(first, image("b", metadata={"y": [2]}, sha256="cd" * 32))
    database.close(first)
    reopened = database.open()
    assert reopened.get("a") is None
    assert reopened.get("b") == b
    assert reopened.head() == 3
    assert reopened.changes(0, 3).removed_keys.tolist() == [record.key]
    (later,) = add(reopened, image("c"))
    assert later.key > record.key + 1  # the deleted key is not reused after a restart either


def test_the_write_lock_is_shared_by_the_stores_on_one_database(database: Database) -> None:
    """The two-process case: two store objects on one database; the second writer waits for the first
    to leave its block, and then sees its write."""
    first, second = database.open(), database.open()
    events: list[str] = []
    inside, release = threading.Event(), threading.Event()
    second_head: list[int] = []

    def hold() -> None:
        with first.writing() as tx:
            tx.add([image("a")])
            events.append("first in")
            inside.set()
            release.wait(HANG)
            events.append("first leaving")

    def write() -> None:
        with second.writing() as tx:
            events.append("second in")
            second_head.append(tx.head)
            tx.add([image("b")])

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(HANG)
    writer = threading.Thread(target=write)
    writer.start()
    # Give the second writer its chance to get in wrongly. PostgreSQL shows it waiting on the lock;
    # the others cannot tell, so a pause: too short a pause can only hide a fault, never make one.
    if database.kind == "postgres":
        assert isinstance(database.where, str)
        while not pg.waiting_for_a_lock(database.where):
            assert writer.is_alive()
            time.sleep(0.01)
    else:
        writer.join(0.3)
    release.set()
    holder.join(HANG)
    writer.join(HANG)
    assert events == ["first in", "first leaving", "second in"]
    assert second_head == [1]
    assert first.head() == second.head() == 2
    assert [r.id for r in first.page(limit=10, after=None)] == ["a", "b"]


def test_on_change_wakes_after_a_write_through_another_store(database: Database) -> None:
    listening, writing = database.open(), database.open()
    woken = threading.Event()
    listening.on_change(woken.set)
    if database.kind == "postgres":
        # It wakes once it listens (what came before may have been missed): from then on, every
        # commit wakes it.
        assert woken.wait(HANG)
        woken.clear()
    add(writing, image("a"))
    if database.kind == "postgres":
        assert woken.wait(HANG)
    assert listening.head() == 1


def test_two_stores_opened_at_once_on_a_new_database_share_it(database: Database) -> None:
    if database.kind == "memory":
        pytest.skip("a memory store is one process's")
    start = threading.Barrier(2)
    opened: list[ImageStore] = []

    def open_store() -> None:
        start.wait(HANG)
        opened.append(database.open())

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(HANG)
    first, second = opened
    assert first.identity == second.identity
    add(first, image("a"))
    assert second.get("a") is not None and second.head() == 1


def test_postgres_unreachable_at_open_is_store_unavailable_with_a_one_line_message() -> None:
    for scheme in ("postgresql", "postgres"):
        with pytest.raises(StoreUnavailable) as caught:
            PostgresImageStore(f"{scheme}://doppel:s3cret-pw@127.0.0.1:1/doppel?connect_timeout=5")
        message = str(caught.value)
        assert "\n" not in message
        assert "s3cret-pw" not in message
        assert f"{scheme}://doppel@127.0.0.1:1/doppel" in message
        assert "cannot be reached" in message


def test_postgres_a_writer_that_skips_the_lock_still_meets_image_exists(postgres_url: str) -> None:
    """An id inserted by a transaction that did not take the lock, and not yet committed when the
    block checks the ids: the insert waits for it, and then names the id."""
    store = PostgresImageStore(postgres_url)
    try:
        with psycopg.connect(postgres_url) as intruder:
            intruder.execute("INSERT INTO images (key, id, dhash, created_at) VALUES (1000, 'x', 1, 0)")
            outcome: list[BaseException] = []

            def write() -> None:
                try:
                    add(store, image("a"), image("x"))
                except BaseException as exc:
                    outcome.append(exc)

            writer = threading.Thread(target=write)
            writer.start()
            while not pg.waiting_for_a_lock(postgres_url):
                assert writer.is_alive()
                time.sleep(0.01)
            intruder.commit()
            writer.join(HANG)
        assert len(outcome) == 1 and isinstance(outcome[0], ImageExists)
        assert outcome[0].image_ids == ["x"]
        assert store.head() == 0 and store.get("a") is None
    finally:
        store.close()


def test_postgres_replaces_connections_the_server_closed(postgres_url: str) -> None:
    store = PostgresImageStore(postgres_url)
    other = PostgresImageStore(postgres_url)
    try:
        woken = threading.Event()
        store.on_change(woken.set)
        assert woken.wait(HANG)  # listening
        woken.clear()
        add(store, image("a"))
        assert woken.wait(HANG)  # notified
        woken.clear()
        assert pg.terminate(postgres_url) >= 3  # the two pools' connections and the listener's
        assert woken.wait(HANG)  # the listener is back, and says it may have missed changes
        woken.clear()
        assert store.count() == 1
        add(other, image("b"))
        assert woken.wait(HANG)
        assert store.head() == 2
    finally:
        store.close()
        other.close()


def test_postgres_away_is_store_unavailable_and_then_served_again(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_store, "CONNECT_TIMEOUT_S", 1)  # fail fast: the test waits for it
    relay = pg.Relay(postgres_url)
    try:
        store = PostgresImageStore(relay.url)
        try:
            add(store, image("a"))
            relay.cut()
            with pytest.raises(StoreUnavailable) as caught:
                add(store, image("b"))
            assert "cannot be reached" in str(caught.value) and "\n" not in str(caught.value)
            with pytest.raises(StoreUnavailable):
                store.head()
            relay.restore()
            deadline = time.monotonic() + HANG
            while True:
                try:
                    assert store.head() == 1  # "b" was not stored
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline, "the store did not reconnect"
            add(store, image("b"))
            assert [r.id for r in store.page(limit=10, after=None)] == ["a", "b"]
        finally:
            store.close()
    finally:
        relay.cut()
