"""The ImageStore contract, run against every implementation."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.errors import ImageExists
from app.models import NewImage
from app.store import ImageStore, MemoryImageStore, SQLiteImageStore


def image(image_id: str, dhash: int = 1, **fields: object) -> NewImage:
    return NewImage(id=image_id, dhash=dhash, width=10, height=20, **fields)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ImageStore]:
    opened: ImageStore = (
        MemoryImageStore() if request.param == "memory" else SQLiteImageStore(tmp_path / "s.db")
    )
    yield opened
    opened.close()


def test_add_then_get_returns_every_field(store: ImageStore) -> None:
    new = image("a", dhash=(1 << 64) - 1, metadata={"k": [1, "v"]}, dhash_vertical=1 << 63, sha256="ab" * 32)
    (record,) = store.add([new])
    assert store.get("a") == record
    assert (record.id, record.dhash, record.dhash_vertical, record.sha256) == (
        "a",
        (1 << 64) - 1,
        1 << 63,
        "ab" * 32,
    )
    assert (record.width, record.height, record.metadata) == (10, 20, {"k": [1, "v"]})
    assert record.created_at.endswith("Z")
    assert store.get("missing") is None


def test_keys_only_grow_and_are_never_reused(store: ImageStore) -> None:
    first, second = store.add([image("a"), image("b")])
    assert second.key > first.key
    store.delete("b")
    (third,) = store.add([image("c")])
    assert third.key > second.key


def test_existing_or_repeated_ids_store_nothing(store: ImageStore) -> None:
    store.add([image("a")])
    with pytest.raises(ImageExists) as caught:
        store.add([image("new"), image("a")])
    assert caught.value.image_ids == ["a"]
    with pytest.raises(ImageExists):
        store.add([image("x"), image("x")])
    assert store.get("new") is None and store.get("x") is None
    assert store.count() == 1


def test_replace_gives_a_new_key_and_returns_the_old_record(store: ImageStore) -> None:
    created, old = store.replace(image("a", dhash=5))
    assert old is None
    replaced, old = store.replace(image("a", dhash=6))
    assert old == created
    assert replaced.key > created.key
    assert store.get("a") == replaced
    assert store.count() == 1


def test_delete_returns_the_record_once(store: ImageStore) -> None:
    (record,) = store.add([image("a")])
    assert store.delete("a") == record
    assert store.delete("a") is None
    assert store.get_by_keys([record.key]) == {}


def test_page_walks_ids_in_order(store: ImageStore) -> None:
    store.add([image(i) for i in ["c", "a", "é", "b", "A"]])
    assert [r.id for r in store.page(limit=2, after=None)] == ["A", "a"]
    assert [r.id for r in store.page(limit=2, after="a")] == ["b", "c"]
    assert [r.id for r in store.page(limit=10, after="c")] == ["é"]
    assert store.page(limit=10, after="é") == []


def test_iter_hashes_yields_every_key_and_hash_in_batches(store: ImageStore) -> None:
    records = store.add([image(f"i{n}", dhash=(n * 0x9E3779B97F4A7C15) % (1 << 64)) for n in range(25)])
    batches = list(store.iter_hashes(10))
    assert [len(keys) for keys, _ in batches] == [10, 10, 5]
    pairs = [(int(k), int(h)) for keys, hashes in batches for k, h in zip(keys, hashes)]
    assert pairs == [(r.key, r.dhash) for r in records]


def test_get_by_keys_leaves_out_unknown_keys(store: ImageStore) -> None:
    a, b = store.add([image("a"), image("b")])
    assert store.get_by_keys([b.key, 12345, a.key]) == {a.key: a, b.key: b}


def test_sqlite_records_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = SQLiteImageStore(path)
    (record,) = first.add([image("a", metadata={"x": 1})])
    first.delete("a")
    first.add([image("b")])
    first.close()
    reopened = SQLiteImageStore(path)
    assert reopened.get("a") is None
    assert reopened.get("b") is not None
    (later,) = reopened.add([image("c")])
    assert later.key > record.key + 1  # the deleted key is not reused after a restart either
    reopened.close()
