"""Parallel uploads and searches from threads: no lost record, no error, no more decodes at once
than the settings allow, in number and in memory."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import encode, make_photo, search, upload
from prometheus_client import CollectorRegistry, Histogram

from app.errors import ImageTooLarge
from app.imaging.hashing import ImageHashes, decode_cost, hash_image_bytes, open_image
from app.service import uploads as hasher_module
from app.service.memory import DecodeMemory


def test_parallel_uploads_and_searches(client: TestClient) -> None:
    photos = {f"t{n}": encode(make_photo(n, (320, 240)), "JPEG", quality=90) for n in range(40)}

    def add(item: tuple[str, bytes]) -> int:
        return upload(client, item[1], item[0]).status_code

    def look(item: tuple[str, bytes]) -> int:
        return search(client, item[1]).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        adds = pool.map(add, photos.items())
        searches = pool.map(look, photos.items())
        assert list(adds) == [201] * len(photos)
        assert list(searches) == [200] * len(photos)

    assert client.get("/health").json()["images"] == len(photos)
    listed = client.get("/images", params={"limit": 1000}).json()["items"]
    assert sorted(item["id"] for item in listed) == sorted(photos)
    for image_id, data in photos.items():
        assert image_id in [m["id"] for m in search(client, data).json()["matches"]]


def test_parallel_uploads_of_one_id_store_it_once(client: TestClient) -> None:
    data = encode(make_photo(1))
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(pool.map(lambda _: upload(client, data, "same").status_code, range(16)))
    assert statuses == [201] + [409] * 15
    assert client.get("/health").json()["images"] == 1


def test_racing_replaces_and_deletes_keep_index_and_store_in_step(client: TestClient) -> None:
    photos = [encode(make_photo(n, (64, 48))) for n in range(4)]

    def churn(n: int) -> int:
        if n % 3 == 2:
            response: httpx.Response = client.delete("/images/same")
        else:
            response = client.put("/images/same", files={"file": ("x", photos[n % 4])})
        return response.status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(churn, range(120))) <= {200, 201, 204, 404}
    stored = len(client.get("/images").json()["items"])
    assert client.get("/health").json()["images"] == stored
    service = client.app.state.service  # type: ignore[attr-defined]
    assert len(service.syncer.index) == stored


@pytest.mark.parametrize("slots", [1, 3])
def test_no_more_decodes_at_once_than_the_setting(monkeypatch: pytest.MonkeyPatch, slots: int) -> None:
    running, most = 0, 0
    counting = threading.Lock()
    real_hash = hash_image_bytes

    def slow_hash(
        data: bytes, *, max_pixels: int, while_decoding: Callable[[int], AbstractContextManager[object]]
    ) -> ImageHashes:
        nonlocal running, most
        with while_decoding(1):
            with counting:
                running += 1
                most = max(most, running)
            time.sleep(0.05)  # long enough for every thread to arrive while this one decodes
            with counting:
                running -= 1
        return real_hash(data, max_pixels=max_pixels)

    monkeypatch.setattr(hasher_module, "hash_image_bytes", slow_hash)
    registry = CollectorRegistry()
    hashing = Histogram("hash_seconds", "", registry=registry)
    waits = Histogram("wait_seconds", "", registry=registry)
    hasher = hasher_module.UploadHasher(
        max_pixels=10**6,
        max_concurrent_decodes=slots,
        memory=DecodeMemory(10**9),
        hash_seconds=hashing,
        decode_wait_seconds=waits,
    )
    data = encode(make_photo(2, (64, 48)))
    with ThreadPoolExecutor(max_workers=8) as pool:
        uploads = list(pool.map(lambda _: hasher.hash(data), range(8)))
    assert most == slots
    assert len({upload.hashes.dhash for upload in uploads}) == 1
    # Every decode is timed, and the uploads that found every slot taken waited for one.
    assert registry.get_sample_value("hash_seconds_count") == 8
    assert (registry.get_sample_value("hash_seconds_sum") or 0) >= 8 * 0.05
    assert registry.get_sample_value("wait_seconds_count") == 8
    assert (
        registry.get_sample_value("wait_seconds_sum") or 0
    ) >= 0.05  # the last ones waited a decode or more


def test_decodes_reserve_no_more_memory_than_the_budget() -> None:
    memory = DecodeMemory(100)
    held, most = 0, 0
    counting = threading.Lock()

    def decode(nbytes: int) -> None:
        nonlocal held, most
        with memory.reserve(nbytes):
            with counting:
                held += nbytes
                most = max(most, held)
            time.sleep(0.05)  # long enough for the others to arrive while this one holds memory
            with counting:
                held -= nbytes

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(decode, [10, 40, 60, 100, 30, 70, 1, 99] * 4))
    assert 60 < most <= 100  # several at once, never over the budget


def test_a_decode_over_the_whole_budget_is_refused_at_once() -> None:
    with pytest.raises(ImageTooLarge, match="DOPPEL_MAX_DECODE_MEMORY"), DecodeMemory(100).reserve(101):
        pass


def test_a_large_decode_waiting_is_not_passed_by_smaller_ones() -> None:
    memory = DecodeMemory(10)
    order: list[str] = []
    first = memory.reserve(6)
    first.__enter__()

    def decode(name: str, nbytes: int) -> None:
        with memory.reserve(nbytes):
            order.append(name)

    large = threading.Thread(target=decode, args=("large", 10))
    large.start()
    while not memory._waiting:  # the large one waits for the 6 held
        time.sleep(0.001)
    small = threading.Thread(target=decode, args=("small", 1))  # fits now, but comes second
    small.start()
    while len(memory._waiting) < 2:
        time.sleep(0.001)
    first.__exit__(None, None, None)
    large.join()
    small.join()
    assert order == ["large", "small"]


def test_an_image_whose_decode_cannot_fit_is_refused_from_its_header() -> None:
    data = encode(make_photo(3, (400, 300)), "PNG")
    cost = decode_cost(open_image(data))
    assert 400 * 300 * 6 <= cost  # RGB: the frame, its grey and the copies between
    refusing = one_at_a_time(DecodeMemory(cost - 1))
    with pytest.raises(ImageTooLarge, match="over the limit"):
        refusing.hash(data)
    fitting = one_at_a_time(DecodeMemory(cost))
    assert fitting.hash(data).hashes.width == 400


def one_at_a_time(memory: DecodeMemory) -> hasher_module.UploadHasher:
    """A hasher of one decode at a time within `memory`, its timings in a registry of their own."""
    registry = CollectorRegistry()
    return hasher_module.UploadHasher(
        max_pixels=10**6,
        max_concurrent_decodes=1,
        memory=memory,
        hash_seconds=Histogram("hash_seconds", "", registry=registry),
        decode_wait_seconds=Histogram("wait_seconds", "", registry=registry),
    )
