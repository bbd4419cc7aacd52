"""Parallel uploads and searches from threads: no lost record, no error."""

from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient
from helpers import encode, make_photo, search, upload


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
