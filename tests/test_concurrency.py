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


def test_racing_replaces_and_deletes_keep_index_and_store_in_step(client: TestClient) -> None:
    photos = [encode(make_photo(n, (64, 48))) for n in range(4)]

    def churn(n: int) -> int:
        if n % 3 == 2:
            return client.delete("/images/same").status_code
        return client.put("/images/same", files={"file": ("x", photos[n % 4])}).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(churn, range(120))) <= {200, 201, 204, 404}
    stored = len(client.get("/images").json()["items"])
    assert client.get("/health").json()["images"] == stored
    service = client.app.state.service  # type: ignore[attr-defined]
    assert len(service.index) == stored
