"""app.index: exact Hamming range search against a brute-force oracle, removal, concurrency."""

import random
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from app.imaging import hamming
from app.index import HammingIndex, hashes_to_codes


def brute_force(stored: dict[int, int], query: int, max_distance: int) -> set[tuple[int, int]]:
    return {(key, hamming(h, query)) for key, h in stored.items() if hamming(h, query) <= max_distance}


def near(base: int, flips: int, rng: random.Random) -> int:
    for bit in rng.sample(range(64), flips):
        base ^= 1 << bit
    return base


@pytest.fixture
def stored() -> dict[int, int]:
    rng = random.Random(1)
    base = rng.getrandbits(64)
    # Around a base hash at every distance from 0 to 20, plus unrelated random hashes.
    hashes = [near(base, d % 21, rng) for d in range(300)] + [rng.getrandbits(64) for _ in range(700)]
    return {key: h for key, h in zip(range(10, 10 + len(hashes) * 3, 3), hashes, strict=True)}


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


def test_searches_never_overlap_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    index = HammingIndex()
    inner = index._index  # the faiss object the lock protects
    state = {"writing": 0, "reading": 0, "overlaps": 0}
    guard = threading.Lock()

    def tracked(kind: str, call: Callable[..., object]) -> Callable[..., object]:
        def run(*args: object) -> object:
            with guard:
                state[kind] += 1
                other = "reading" if kind == "writing" else "writing"
                if state[other] or (kind == "writing" and state["writing"] > 1):
                    state["overlaps"] += 1
            try:
                time.sleep(0.001)  # widen the window a race would need
                return call(*args)
            finally:
                with guard:
                    state[kind] -= 1

        return run

    class Tracked:
        ntotal = property(lambda self: inner.ntotal)
        add_with_ids = staticmethod(tracked("writing", inner.add_with_ids))
        remove_ids = staticmethod(tracked("writing", inner.remove_ids))
        range_search = staticmethod(tracked("reading", inner.range_search))

    def write(n: int) -> None:
        for i in range(20):
            index.add([n * 100 + i], [i])

    def read() -> None:
        for _ in range(40):
            index.search([0], max_distance=64)

    monkeypatch.setattr(index, "_index", Tracked())
    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["overlaps"] == 0
    assert len(index) == 60
