"""/search over HTTP: by upload and by hash, ordering, parameters and errors."""

from collections.abc import Iterator

import imagehash
import pytest
from fastapi.testclient import TestClient
from helpers import encode, make_photo, make_texture, search, upload
from PIL import Image

from app.config import Settings
from app.factory import create_app
from app.imaging import HASHING_VERSION
from app.imaging.hashing import parse_hash_hex
from app.models import NewImage
from app.store import open_store


@pytest.fixture
def stored(settings: Settings) -> Iterator[TestClient]:
    """A service started on a store holding hashes at known distances from the hash 0."""
    hashes = {"zero": 0, "three-b": 0b111, "three-a": 0b111 << 20, "ten": (1 << 10) - 1, "far": (1 << 40) - 1}
    store = open_store(settings)
    with store.writing() as write:
        write.add(
            [
                NewImage(id=k, dhash=v, width=1, height=1, hashing_version=HASHING_VERSION)
                for k, v in hashes.items()
            ]
        )
    store.close()
    with TestClient(create_app(settings)) as client:
        yield client


def test_search_by_upload_finds_the_copies(client: TestClient) -> None:
    photo = make_photo(1)
    upload(client, encode(photo), "original", '{"src": "a"}')
    upload(client, encode(make_photo(2)), "other")
    response = search(client, encode(photo.resize((400, 300)), "JPEG", quality=60))
    assert response.status_code == 200
    body = response.json()
    assert imagehash.hex_to_hash(body["hash"]) - imagehash.dhash(photo) <= 10
    assert [m["id"] for m in body["matches"]] == ["original"]
    assert body["matches"][0]["metadata"] == {"src": "a"}
    assert client.get("/health").json()["images"] == 2  # searching stores nothing


def test_a_flat_picture_is_said_to_be_so(client: TestClient) -> None:
    assert upload(client, encode(make_photo(1)), "photo").json()["flat"] is False
    assert search(client, encode(make_photo(1))).json()["flat"] is False
    body = search(client, encode(make_texture(1), "PNG")).json()
    assert body["flat"] is True and body["matches"] == []
    # where it is stored too: added, replaced, in a batch
    assert upload(client, encode(make_texture(1), "PNG"), "page").json()["flat"] is True
    put = client.put("/images/photo", files={"file": ("t.png", encode(make_texture(2), "PNG"))})
    assert put.status_code == 200 and put.json()["flat"] is True
    put = client.put("/images/new", files={"file": ("t.png", encode(make_texture(4), "PNG"))})
    assert put.status_code == 201 and put.json()["flat"] is True
    files = [("file", ("p.png", encode(make_photo(3)))), ("file", ("t.png", encode(make_texture(3), "PNG")))]
    batch = client.post("/images/batch", files=files)
    assert [item["flat"] for item in batch.json()["items"]] == [False, True]
    assert "flat" not in client.get("/images/page").json()  # not kept with the record
    # a logo on a blank page is not flat: the hashes see it
    page = Image.new("RGB", (640, 480), "white")
    page.paste((20, 40, 160), (100, 100, 300, 260))
    assert search(client, encode(page, "PNG")).json()["flat"] is False
    # a search by hash cannot tell
    assert client.get("/search", params={"hash": "0" * 16}).json()["flat"] is None


def test_matches_are_sorted_by_distance_then_id(stored: TestClient) -> None:
    params = {"hash": "0000000000000000", "confirm": "false"}
    matches = stored.get("/search", params=params).json()["matches"]
    assert [(m["id"], m["distance"]) for m in matches] == [
        ("zero", 0),
        ("three-a", 3),
        ("three-b", 3),
        ("ten", 10),
    ]
    # Neither side has a vertical or DCT hash: each unknown distance counts as 13 bits.
    assert [m["similarity"] for m in matches] == [1 - (d + 26) / 3 / 64 for d in (0, 3, 3, 10)]
    scored = stored.get("/search", params={"hash": "0000000000000000"}).json()["matches"]
    assert [m["id"] for m in scored] == ["zero", "three-a", "three-b"]  # a score of (10 + 26) / 3 is over 10


def test_max_distance_and_limit(stored: TestClient) -> None:
    def ids(**params: object) -> list[str]:
        query = {"hash": "0" * 16, "confirm": "false", **params}
        return [m["id"] for m in stored.get("/search", params=query).json()["matches"]]

    assert ids(max_distance=0) == ["zero"]
    assert ids(max_distance=9) == ["zero", "three-a", "three-b"]
    assert ids(max_distance=64) == ["zero", "three-a", "three-b", "ten", "far"]
    assert ids(limit=2) == ["zero", "three-a"]
    assert ids(limit=3, max_distance=64) == ["zero", "three-a", "three-b"]


def test_search_by_hash_accepts_imagehash_output(client: TestClient) -> None:
    photo = make_photo(3)
    upload(client, encode(photo), "p")
    response = client.get("/search", params={"hash": str(imagehash.dhash(photo)).upper()})
    assert response.json()["hash"] == str(imagehash.dhash(photo))
    assert [m["distance"] for m in response.json()["matches"]] == [0]


@pytest.mark.parametrize("field", ["vertical_hash", "dct_hash"])
def test_a_bad_second_hash_is_named(client: TestClient, field: str) -> None:
    response = client.get("/search", params={"hash": "0" * 16, field: "abc"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith(f"{field} must be 16 hex digits")


@pytest.mark.parametrize("bad", ["", "abc", "zzzzzzzzzzzzzzzz", "0123456789abcdef00", "0x23456789abcdef"])
def test_bad_hash_is_unprocessable(client: TestClient, bad: str) -> None:
    response = client.get("/search", params={"hash": bad})
    assert response.status_code == 422
    assert "16 hex digits" in response.json()["detail"]


def test_missing_hash_is_unprocessable(client: TestClient) -> None:
    assert client.get("/search").status_code == 422


@pytest.mark.parametrize(
    "params", [{"max_distance": -1}, {"max_distance": 65}, {"limit": 0}, {"limit": 1001}, {"limit": "many"}]
)
def test_bad_parameters_are_unprocessable(client: TestClient, params: dict[str, object]) -> None:
    assert search(client, encode(make_photo(1)), **params).status_code == 422
    assert client.get("/search", params={"hash": "0" * 16, **params}).status_code == 422


def test_search_errors(client: TestClient) -> None:
    assert search(client, b"%PDF-1.4 not an image").status_code == 415
    data = encode(make_photo(1), "PNG")
    response = search(client, data[:100])
    assert response.status_code == 422 and "detail" in response.json()
    assert client.post("/search").status_code == 422


def test_parse_hash_matches_hex() -> None:
    assert parse_hash_hex("ffffffffffffffff") == (1 << 64) - 1
