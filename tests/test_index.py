"""app.index: exact Hamming range search against a brute-force oracle (chunk search and scan, in the
main and side tables, the buffer of recent adds), removal, save/load, concurrency."""

import random
import threading
from collections.abc import Iterator
from itertools import product
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
import pytest

import app.index
from app.imaging.hashing import hamming
from app.index import HammingIndex, _choose_plan, _masks, _Plan, _Tables, hashes_to_codes

Codes = npt.NDArray[np.uint64]


def brute_force(stored: dict[int, int], query: int, max_distance: int) -> set[tuple[int, int]]:
    return {(key, hamming(h, query)) for key, h in stored.items() if hamming(h, query) <= max_distance}


def oracle(keys: npt.NDArray[np.int64], codes: Codes, query: int, max_distance: int) -> set[tuple[int, int]]:
    distances = np.bitwise_count(codes ^ np.uint64(query))
    near = distances <= max_distance
    return set(zip(keys[near].tolist(), distances[near].tolist(), strict=True))


def near(base: int, flips: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), flips):
        base ^= 1 << bit
    return base


def flipped(rng: np.random.Generator, base: Codes, flips: npt.NDArray[np.int64]) -> Codes:
    """Each of `base` with flips[i] distinct random bits flipped."""
    out = base.copy()
    for row, count in enumerate(flips.tolist()):
        for bit in rng.choice(64, count, replace=False).tolist():
            out[row] ^= np.uint64(1 << bit)
    return out


@pytest.fixture
def stored() -> dict[int, int]:
    rng = random.Random(1)
    base = rng.getrandbits(64)
    # Around a base hash at every distance from 0 to 20, plus unrelated random hashes.
    hashes = [near(base, d % 21, rng) for d in range(300)] + [rng.getrandbits(64) for _ in range(700)]
    return {key: h for key, h in zip(range(10, 10 + len(hashes) * 3, 3), hashes, strict=True)}


@pytest.fixture(scope="module")
def library() -> tuple[npt.NDArray[np.int64], Codes, Codes]:
    """40,000 hashes (enough for the chunk search): uniform ones, 10% clustered around a few
    centres (0-12 bits flipped, as dark or flat images pile up), and 13 planted neighbours at
    distances 0-12 of each of 60 queries (40 uniform, 20 near a centre)."""
    rng = np.random.default_rng(7)
    centres = np.concatenate(
        [np.array([0, (1 << 64) - 1], dtype=np.uint64), rng.integers(0, 1 << 64, 6, dtype=np.uint64)]
    )
    uniform = rng.integers(0, 1 << 64, 34_000, dtype=np.uint64)
    clustered = flipped(rng, centres[rng.integers(0, len(centres), 4_000)], rng.integers(0, 13, 4_000))
    queries = np.concatenate(
        [
            rng.integers(0, 1 << 64, 40, dtype=np.uint64),
            flipped(rng, centres[rng.integers(0, 8, 20)], rng.integers(0, 3, 20)),
        ]
    )
    planted = flipped(rng, np.repeat(queries, 13), np.tile(np.arange(13), len(queries)))
    codes = np.concatenate([uniform, clustered, planted, planted[:50]])  # and a few exact duplicates
    rng.shuffle(codes)
    keys = np.arange(1, 2 * len(codes) + 1, 2, dtype=np.int64)
    return keys, codes, queries


def assert_exact(
    index: HammingIndex, keys: npt.NDArray[np.int64], codes: Codes, queries: Codes, radii: list[int]
) -> None:
    for radius in radii:
        results = index.search([int(q) for q in queries], max_distance=radius)
        for query, hits in zip(queries.tolist(), results, strict=True):
            assert len(hits) == len(set(hits)), "a match reported twice"
            assert set(hits) == oracle(keys, codes, query, radius), f"radius {radius}"


def test_codes_are_big_endian_bytes_of_the_hash() -> None:
    codes = hashes_to_codes(np.array([0x0102030405060708], dtype=np.uint64))
    assert codes.tolist() == [[1, 2, 3, 4, 5, 6, 7, 8]]


@pytest.mark.parametrize("max_distance", [0, 1, 5, 10, 11, 20, 64])
def test_search_equals_brute_force(stored: dict[int, int], max_distance: int) -> None:
    index = HammingIndex()
    index.add(list(stored), list(stored.values()))
    queries = [stored[10], stored[13], random.Random(2).getrandbits(64)]
    results = index.search(queries, max_distance=max_distance)
    for query, hits in zip(queries, results, strict=True):
        assert set(hits) == brute_force(stored, query, max_distance)


@pytest.mark.parametrize("path", ["chunks", "cost model"])
def test_exact_for_radii_0_to_12_and_larger(
    library: tuple[npt.NDArray[np.int64], Codes, Codes], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    keys, codes, queries = library
    monkeypatch.setattr(app.index, "DELTA_MIN", 1_000)  # so that one add goes to the tables
    if path == "chunks":  # the chunk search wherever one is exact, however little it pays
        monkeypatch.setattr(app.index, "SCAN_NS", 1e9)
    index = HammingIndex()
    index.add(keys, codes)
    index._settle()  # merges run in a thread of their own
    main = index._state.main
    assert len(main) == len(codes) and all(main.bits)  # all in the main tables, indexed
    if path == "chunks":
        assert all(main._plan(radius) is not None for radius in [*range(13), 20, 32])
    assert main._plan(64) is None  # no split of 64 into these tables' bits: the scan
    assert_exact(index, keys, codes, queries, [*range(13), 14, 16, 20, 24, 32, 64])


def test_the_scan_takes_over_at_large_radii() -> None:
    bits = (22, 21, 21)
    for size in (1_000_000, 10_000_000, 100_000_000):
        picks = [_choose_plan(size, bits, radius) is not None for radius in range(65)]
        assert all(picks[:11]), size  # the chunk search at the service's usual radii
        assert not any(picks[24:]), size  # and the scan from some radius on, for good
        assert picks.index(False) == picks.count(True), size


def test_every_exact_split_of_the_radius_finds_the_same(
    library: tuple[npt.NDArray[np.int64], Codes, Codes],
) -> None:
    """Whatever probe radii the cost model picks, any split with (t0+1) + (t1+1) + (t2+1) > r
    (a table skipped when its t is -1) must give the exact answer, each match once."""
    keys, codes, queries = library
    tables = _Tables.build(keys, codes).indexed()
    ours = [int(q) for q in queries[::3]]
    for radius in range(0, 9):
        expected = [oracle(keys, codes, q, radius) for q in ours]
        for radii in product(range(-1, radius + 1), repeat=3):
            if sum(r + 1 for r in radii) != radius + 1:
                continue
            masks = tuple(
                _masks(bits, r) if r >= 0 else None for bits, r in zip(tables.bits, radii, strict=True)
            )
            plan = _Plan((radii[0], radii[1], radii[2]), (masks[0], masks[1], masks[2]))
            hits = tables.probe(np.array(ours, dtype=np.uint64), radius, plan)
            for number, want in enumerate(expected):
                mine = hits.queries == number
                got = list(zip(hits.keys[mine].tolist(), hits.distances[mine].tolist(), strict=True))
                assert len(got) == len(set(got)) and set(got) == want, (radius, radii)


@pytest.fixture
def synchronous_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merges in the writer's thread, so that which part holds what is known after each write."""
    monkeypatch.setattr(app.index, "BACKGROUND_MERGES", False)


@pytest.fixture
def small_tiers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Merges and the chunk search at small sizes, so small data spreads over every part."""
    monkeypatch.setattr(app.index, "DELTA_MIN", 500)
    monkeypatch.setattr(app.index, "DELTA_MAX", 1_000)
    monkeypatch.setattr(app.index, "MIN_INDEXED", 256)
    monkeypatch.setattr(app.index, "SIDE_RATIO", 4)


@pytest.mark.usefixtures("small_tiers", "synchronous_merges")
def test_exact_across_main_side_buffer_and_removals(
    library: tuple[npt.NDArray[np.int64], Codes, Codes],
) -> None:
    keys, codes, queries = library
    index = HammingIndex()
    for start in range(0, len(keys) - 300, 3_000):
        index.add(
            keys[start : min(start + 3_000, len(keys) - 300)],
            codes[start : min(start + 3_000, len(keys) - 300)],
        )
    for key, code in zip(keys[-300:].tolist(), codes[-300:].tolist(), strict=True):
        index.add([key], [code])  # single adds, into the buffer
    index._settle()
    state = index._state
    assert len(state.main) and len(state.side) and state.delta_size  # every part holds some
    alive = np.ones(len(keys), dtype=np.bool_)
    gone = np.random.default_rng(3).choice(len(keys), 500, replace=False)
    index.remove(keys[gone])
    alive[gone] = False
    index._settle()
    assert index._state.dead.size  # some still filtered at search time
    assert len(index) == int(alive.sum())
    assert_exact(index, keys[alive], codes[alive], queries, [0, 3, 7, 10, 12, 20, 64])
    # Enough removals drop them from the tables.
    more = np.flatnonzero(alive)[:20_000]
    index.remove(keys[more])
    alive[more] = False
    assert len(index) == int(alive.sum())
    index._settle()
    assert index._state.dead.size < len(more)
    assert_exact(index, keys[alive], codes[alive], queries, [0, 10, 12, 64])


def test_boundary_is_inclusive() -> None:
    index = HammingIndex()
    index.add([1, 2], [0, (1 << 10) - 1])  # distance 0 and exactly 10 from the query 0
    assert sorted(index.search([0], max_distance=10)[0]) == [(1, 0), (2, 10)]
    assert index.search([0], max_distance=9)[0] == [(1, 0)]


def test_removed_keys_are_gone_and_others_keep_their_ids(stored: dict[int, int]) -> None:
    index = HammingIndex()
    index.add(list(stored), list(stored.values()))
    removed = list(stored)[::2]
    index.remove(removed + [999_999])  # an unknown key is ignored
    assert len(index) == len(stored) - len(removed)
    remaining = {k: h for k, h in stored.items() if k not in removed}
    (hits,) = index.search([stored[13]], max_distance=64)
    assert set(hits) == brute_force(remaining, stored[13], 64)


@pytest.mark.usefixtures("small_tiers")
def test_add_remove_replace_semantics() -> None:
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 1 << 64, 5_000, dtype=np.uint64)
    index = HammingIndex()
    index.add(np.arange(1, 4_001), codes[:4_000])  # into the tables
    index.add(np.arange(4_001, 4_101), codes[4_000:4_100])  # into the buffer
    assert len(index) == 4_100
    index.remove([5, 4_050, 123_456_789, -3])  # one in the tables, one buffered, two unknown
    index.remove([5, 4_050])  # removing again changes nothing
    assert len(index) == 4_098
    assert index.search([int(codes[4]), int(codes[4_049])], max_distance=0) == [[], []]
    # Replacing an image: its old key goes, a new key comes with the new hash.
    index.remove([6])
    index.add([10_000], [int(codes[4_500])])
    assert index.search([int(codes[5])], max_distance=0) == [[]]
    assert index.search([int(codes[4_500])], max_distance=0) == [[(10_000, 0)]]
    assert len(index) == 4_098
    # One hash under several keys; keys past 2**32; hashes with the top bit set.
    top = (1 << 64) - 1
    index.add([1 << 40, (1 << 40) + 1, 20_000], [top, top, top ^ 1])
    assert sorted(index.search([top], max_distance=1)[0]) == [(20_000, 1), (1 << 40, 0), ((1 << 40) + 1, 0)]
    index.add(np.arange(30_000, 31_000), codes[:1_000])  # a merge with keys of both widths
    assert sorted(index.search([top], max_distance=1)[0]) == [(20_000, 1), (1 << 40, 0), ((1 << 40) + 1, 0)]
    index.remove([1 << 40])
    assert sorted(index.search([top], max_distance=0)[0]) == [((1 << 40) + 1, 0)]
    assert len(index) == 4_098 + 3 + 1_000 - 1


def test_empty_and_odd_requests() -> None:
    index = HammingIndex()
    assert len(index) == 0
    assert index.search([1, 2], max_distance=10) == [[], []]
    index.add([], [])
    index.remove([])
    index.add([1], [7])
    assert index.search([], max_distance=10) == []
    assert index.search([7], max_distance=-1) == [[]]
    with pytest.raises(ValueError):
        index.add([1, 2], [3])


@pytest.mark.usefixtures("small_tiers", "synchronous_merges")
def test_save_and_load_round_trip(
    tmp_path: Path, library: tuple[npt.NDArray[np.int64], Codes, Codes]
) -> None:
    keys, codes, queries = library
    index = HammingIndex()
    index.add(keys[:30_000], codes[:30_000])
    index.add(keys[30_000:31_000], codes[30_000:31_000])
    index.add(keys[31_000:31_200], codes[31_000:31_200])
    index.add([1 << 40], [int(codes[-1])])  # a wide key
    index.remove(keys[::97])
    index._settle()
    state = index._state
    assert len(state.main) and len(state.side) and state.delta_size and state.dead.size
    path = tmp_path / "index.snapshot"
    index.save(path)
    loaded = HammingIndex()
    loaded.add([5], [5])  # replaced by the load
    loaded.load(path)
    assert len(loaded) == len(index)
    ours = [int(q) for q in queries]
    for radius in (0, 10, 12, 30):
        assert [set(h) for h in loaded.search(ours, max_distance=radius)] == [
            set(h) for h in index.search(ours, max_distance=radius)
        ]
    loaded.add(keys[31_200:], codes[31_200:])  # it goes on as any index
    loaded.remove(keys[1::97])
    kept = np.ones(len(keys), dtype=np.bool_)
    kept[:31_200:97] = kept[1::97] = False  # the first removal was of keys then in the index
    everything = np.concatenate([keys[kept], [1 << 40]]), np.concatenate([codes[kept], codes[-1:]])
    assert len(loaded) == len(everything[0])
    assert_exact(loaded, *everything, queries[:10], [10, 64])
    empty = HammingIndex()
    empty.save(tmp_path / "empty")
    empty.load(tmp_path / "empty")
    assert len(empty) == 0 and empty.search([1], max_distance=64) == [[]]


def bad_files(good: bytes, folder: Path) -> Iterator[Path]:
    faiss_file = folder / "old.faiss"  # the format before: a faiss index of the same hashes
    flat = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(64))
    flat.add_with_ids(hashes_to_codes(np.arange(5, dtype=np.uint64)), np.arange(5, dtype=np.int64))
    faiss.write_index_binary(flat, str(faiss_file))
    yield faiss_file
    flipped_byte = bytearray(good)
    flipped_byte[len(good) // 2] ^= 0x10
    for name, content in [
        ("empty", b""),
        ("text", b"not an index at all"),
        ("truncated", good[: len(good) - 7]),
        ("header only", good[:44]),
        ("trailing", good + b"\0"),
        ("flipped", bytes(flipped_byte)),
    ]:
        path = folder / name
        path.write_bytes(content)
        yield path


def test_load_refuses_what_is_not_a_saved_index(tmp_path: Path) -> None:
    index = HammingIndex()
    index.add(np.arange(1, 2_001), np.random.default_rng(1).integers(0, 1 << 64, 2_000, dtype=np.uint64))
    index.remove([3])
    good = tmp_path / "good"
    index.save(good)
    for path in bad_files(good.read_bytes(), tmp_path):
        target = HammingIndex()
        target.add([1], [1])
        with pytest.raises((ValueError, RuntimeError, OSError)):
            target.load(path)
        assert target.search([1], max_distance=0) == [[(1, 0)]], path.name  # left as it was
    with pytest.raises(OSError):
        HammingIndex().load(tmp_path / "missing")


def test_concurrent_adds_removes_and_searches() -> None:
    index = HammingIndex()
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for i in range(200):
                key = offset + i
                index.add([key], [key * 2654435761 % (1 << 64)])
                if i % 3 == 0:
                    index.remove([key])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(300):
                for _key, distance in index.search([0], max_distance=64)[0]:
                    assert 0 <= distance <= 64
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n * 1000,)) for n in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(index) == 4 * (200 - 67)


@pytest.mark.usefixtures("small_tiers")
def test_searches_during_writes_see_every_write_before_them_and_nothing_torn() -> None:
    """One writer adds keys in order, in batches that go through the buffer, side and main merges,
    and removes some; each search must see exactly the writes done before some moment: a prefix
    of the added keys less the removed ones among them, never a half-applied write."""
    rng = np.random.default_rng(11)
    hashes = rng.integers(0, 1 << 64, 12_000, dtype=np.uint64)
    target = int(hashes[0])
    near_target = [
        int(h) for h in flipped(rng, np.full(6_000, target, dtype=np.uint64), rng.integers(0, 6, 6_000))
    ]
    hashes[::2] = near_target  # every even-numbered key is within 5 of the target
    index = HammingIndex()
    removed = set(range(0, 12_000, 10))  # removed right after their batch is added
    done = threading.Event()
    errors: list[str] = []
    expected = {key for key in range(0, 12_000, 2)} - removed

    def write() -> None:
        for start in range(0, 12_000, 300):
            index.add(np.arange(start, start + 300), hashes[start : start + 300])
            index.remove([k for k in range(start, start + 300) if k in removed])
        done.set()

    def read() -> None:
        last_batch = -1
        while True:
            finished = done.is_set()
            (hits,) = index.search([target], max_distance=5)
            keys = {key for key, _ in hits}
            batch = max(keys, default=-1) // 300  # the last batch seen (its top key is never removed)
            must = {k for k in expected if k < (batch + 1) * 300}
            may = must | {k for k in removed if k % 2 == 0 and k // 300 == batch}  # before their removal
            if not must <= keys <= may or batch < last_batch:
                errors.append(f"torn read: {len(keys)} keys, last batch {batch}, before {last_batch}")
                return
            last_batch = batch
            if finished:
                return

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    (final,) = index.search([target], max_distance=5)
    assert {key for key, _ in final} == expected


def hold_merges(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """From now on a merge, once started, waits until the test releases it: (started, release)."""
    started, release = threading.Event(), threading.Event()
    merge = app.index._State.merge

    def held_merge(self: app.index._State) -> tuple[_Tables, _Tables, npt.NDArray[np.int64]]:
        started.set()
        assert release.wait(30)
        return merge(self)

    monkeypatch.setattr(app.index._State, "merge", held_merge)
    return started, release


def test_writes_during_a_merge_return_at_once_and_are_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A merge runs in a thread of its own, on the buffer frozen when it started: adds, removes,
    searches and a save made meanwhile see everything, and nothing is lost when it is swapped in."""
    monkeypatch.setattr(app.index, "DELTA_MIN", 500)
    monkeypatch.setattr(app.index, "DELTA_MAX", 1_000)
    monkeypatch.setattr(app.index, "MIN_INDEXED", 256)
    started, release = hold_merges(monkeypatch)
    rng = np.random.default_rng(13)
    codes = rng.integers(0, 1 << 64, 6_000, dtype=np.uint64)
    codes[1::7] = flipped(rng, np.full(len(codes[1::7]), codes[0]), rng.integers(0, 8, len(codes[1::7])))
    keys = np.arange(1, 6_001, dtype=np.int64)
    queries = codes[:40:3]
    index = HammingIndex()
    index.add(keys[:3_000], codes[:3_000])  # over the buffer's bound: a merge starts, and waits
    assert started.wait(30)
    index.add(keys[3_000:3_100], codes[3_000:3_100])  # into a new buffer
    index.remove([int(keys[5]), int(keys[2_999]), int(keys[3_050]), 10**9])  # frozen, frozen, buffered
    index.add(keys[3_100:], codes[3_100:])  # a merge is due again, and waits for the running one
    alive = np.ones(len(keys), dtype=np.bool_)
    alive[[5, 2_999, 3_050]] = False
    state = index._state
    assert len(state.frozen.keys) == 3_000 and state.delta_size == 100 + 2_900 - 1
    assert len(index) == int(alive.sum())
    assert_exact(index, keys[alive], codes[alive], queries, [0, 10, 64])
    index.save(tmp_path / "during")
    release.set()
    index._settle()
    state = index._state
    assert not len(state.frozen.keys) and not state.delta_size  # both buffers merged
    assert len(state.main) + len(state.side) == len(keys) - 1  # all but the key removed from the buffer
    assert len(index) == int(alive.sum())
    assert_exact(index, keys[alive], codes[alive], queries, [0, 10, 64])
    loaded = HammingIndex()
    loaded.load(tmp_path / "during")
    loaded._settle()
    assert len(loaded) == int(alive.sum())
    assert_exact(loaded, keys[alive], codes[alive], queries, [0, 10, 64])


def test_a_loaded_index_answers_while_its_tables_are_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library: tuple[npt.NDArray[np.int64], Codes, Codes]
) -> None:
    """A load returns once the file is read: the main entries are scanned until the merging thread
    has built their tables; removals, adds and a save meanwhile are kept."""
    keys, codes, queries = library
    monkeypatch.setattr(app.index, "DELTA_MIN", 1_000)
    saved = HammingIndex()
    saved.add(keys[:30_000], codes[:30_000])
    saved._settle()
    saved.add(keys[30_000:30_500], codes[30_000:30_500])  # in the buffer
    saved.remove(keys[:300:7])
    saved.save(tmp_path / "saved")
    started, release = hold_merges(monkeypatch)
    index = HammingIndex()
    index.load(tmp_path / "saved")
    assert started.wait(30) and index._state.frozen.ordered and not len(index._state.main)
    alive = np.zeros(len(keys), dtype=np.bool_)
    alive[:30_500] = True
    alive[:300:7] = False
    assert len(index) == int(alive.sum())
    assert_exact(index, keys[alive], codes[alive], queries, [0, 10, 12])
    index.remove(keys[1:300:7])  # frozen entries: among the removed keys
    index.add(keys[30_500:], codes[30_500:])
    alive[1:300:7] = False
    alive[30_500:] = True
    index.save(tmp_path / "meanwhile")
    release.set()
    index._settle()
    assert len(index._state.main) >= 30_000 and not len(index._state.frozen.keys)
    for loaded in (index, HammingIndex()):
        if loaded is not index:
            loaded.load(tmp_path / "meanwhile")
            loaded._settle()
        assert len(loaded) == int(alive.sum())
        assert_exact(loaded, keys[alive], codes[alive], queries, [0, 10, 12, 64])
