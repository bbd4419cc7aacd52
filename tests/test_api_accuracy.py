"""The score over all hashes, flips and rotations, exact copies and on_duplicate, over HTTP."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import encode, make_photo, search, upload
from PIL import Image

from app.api.schemas import DuplicateOut
from app.config import Settings
from app.factory import create_app
from app.imaging import HASHING_VERSION
from app.imaging.hashing import hash_hex
from app.models import NewImage
from app.store import open_store

T = Image.Transpose


@pytest.fixture
def lookalikes(settings: Settings) -> Iterator[TestClient]:
    """Stored records near the dHash 0: one whose DCT hash agrees with the query's, one far, and
    two hash-only records (no vertical or DCT hash), 2 and 7 bits away."""
    store = open_store(settings)
    with store.writing() as write:
        write.add(
            [
                NewImage(
                    id="same", dhash=0, width=1, height=1, dct_hash=0xFF00, hashing_version=HASHING_VERSION
                ),
                NewImage(
                    id="other",
                    dhash=1,
                    width=1,
                    height=1,
                    dct_hash=0xFF00 ^ ((1 << 40) - 1),
                    hashing_version=HASHING_VERSION,
                ),
                NewImage(id="hash-only", dhash=3, width=1, height=1, hashing_version=HASHING_VERSION),
                NewImage(id="hash-only-far", dhash=0x7F, width=1, height=1, hashing_version=HASHING_VERSION),
            ]
        )
    store.close()
    with TestClient(create_app(settings)) as client:
        yield client


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [m["id"] for m in response.json()["matches"]]


def test_candidates_are_judged_by_their_score(lookalikes: TestClient) -> None:
    params = {"hash": "0" * 16, "dct_hash": hash_hex(0xFF00)}
    response = lookalikes.get("/search", params=params)
    # An unknown distance counts as 13 bits: a hash-only record needs a close dHash (2, not 7).
    assert ids(response) == ["same", "hash-only"]
    matches = response.json()["matches"]
    assert [m["dct_distance"] for m in matches] == [0, None]
    assert [m["similarity"] for m in matches] == [1 - 13 / 3 / 64, 1 - (2 + 26) / 3 / 64]
    unconfirmed = lookalikes.get("/search", params=params | {"confirm": "false"})
    assert ids(unconfirmed) == ["same", "other", "hash-only", "hash-only-far"]
    assert unconfirmed.json()["matches"][1]["dct_distance"] == 40


def test_a_query_by_dhash_alone_needs_a_close_dhash(lookalikes: TestClient) -> None:
    assert ids(lookalikes.get("/search", params={"hash": "0" * 16})) == ["same", "other", "hash-only"]
    assert ids(lookalikes.get("/search", params={"hash": hash_hex(0x7F)})) == ["hash-only-far"]


def test_the_score_threshold_is_a_setting(settings: Settings) -> None:
    photo = make_photo(1)
    with TestClient(create_app(settings.model_copy(update={"max_score": 0}))) as client:
        upload(client, encode(photo), "p")
        copy = encode(photo.resize((200, 150)), "JPEG", quality=40)
        body = search(client, copy, confirm="false").json()
        assert body["matches"][0]["dct_distance"] > 0
        assert search(client, copy).json()["matches"] == []


def test_search_returns_all_three_query_hashes(client: TestClient) -> None:
    body = search(client, encode(make_photo(1))).json()
    assert all(len(body[k]) == 16 for k in ("hash", "vertical_hash", "dct_hash"))
    stored = upload(client, encode(make_photo(1))).json()
    assert (stored["hash"], stored["vertical_hash"], stored["dct_hash"]) == (
        body["hash"],
        body["vertical_hash"],
        body["dct_hash"],
    )


@pytest.mark.parametrize(
    ("turn", "orientation"),
    [
        (T.FLIP_LEFT_RIGHT, "flip_horizontal"),
        (T.FLIP_TOP_BOTTOM, "flip_vertical"),
        (T.ROTATE_270, "rotate_90"),
        (T.ROTATE_180, "rotate_180"),
        (T.ROTATE_90, "rotate_270"),
        (T.TRANSPOSE, "transpose"),
        (T.TRANSVERSE, "transverse"),
    ],
)
def test_flipped_and_turned_copies_need_all_orientations(
    client: TestClient, turn: T, orientation: str
) -> None:
    photo = make_photo(2)
    upload(client, encode(photo), "upright")
    upload(client, encode(make_photo(3)), "other")
    turned = encode(photo.transpose(turn), "JPEG", quality=85)
    assert search(client, turned).json()["matches"] == []
    matches = search(client, turned, all_orientations="true").json()["matches"]
    assert [(m["id"], m["orientation"]) for m in matches] == [("upright", orientation)]
    assert matches[0]["distance"] <= 10 and matches[0]["similarity"] >= 1 - 10 / 64


def test_plain_matches_say_original(client: TestClient) -> None:
    photo = make_photo(4)
    upload(client, encode(photo), "p")
    matches = search(client, encode(photo, "JPEG"), all_orientations="true").json()["matches"]
    assert [(m["id"], m["orientation"]) for m in matches] == [("p", "original")]


def test_stored_duplicates_in_all_orientations(client: TestClient) -> None:
    photo = make_photo(5)
    upload(client, encode(photo), "a")
    upload(client, encode(photo.transpose(T.ROTATE_90)), "b")
    assert client.get("/images/a/duplicates").json()["matches"] == []
    matches = client.get("/images/a/duplicates", params={"all_orientations": "true"}).json()["matches"]
    assert [(m["id"], m["orientation"]) for m in matches] == [("b", "rotate_90")]


def test_identical_bytes_are_exact(client: TestClient) -> None:
    data = encode(make_photo(6), "JPEG", quality=90)
    upload(client, data, "a")
    upload(client, encode(make_photo(6), "PNG"), "b")
    matches = {m["id"]: m["exact"] for m in search(client, data).json()["matches"]}
    assert matches == {"a": True, "b": False}
    duplicates = upload(client, data, "c").json()["duplicates"]
    assert {(d["id"], d["exact"]) for d in duplicates} == {("a", True), ("b", False)}


def test_on_duplicate_reject_refuses_near_copies(client: TestClient) -> None:
    photo = make_photo(7)
    upload(client, encode(photo), "a", '{"owner": "ann"}')
    response = upload(client, encode(photo, "JPEG", quality=70), "b", on_duplicate="reject")
    assert response.status_code == 409
    body = response.json()
    assert "copy" in body["detail"]
    assert [(m["id"], m["exact"], m["metadata"]) for m in body["matches"]] == [("a", False, {"owner": "ann"})]
    assert client.get("/images/b").status_code == 404
    assert upload(client, encode(make_photo(8)), "c", on_duplicate="reject").status_code == 201


def test_on_duplicate_reject_exact_refuses_only_identical_bytes(client: TestClient) -> None:
    data = encode(make_photo(9), "PNG")
    upload(client, data, "a")
    near = upload(client, encode(make_photo(9), "JPEG"), "b", on_duplicate="reject_exact")
    assert near.status_code == 201 and [d["id"] for d in near.json()["duplicates"]] == ["a"]
    same = upload(client, data, "c", on_duplicate="reject_exact")
    assert same.status_code == 409
    assert [(m["id"], m["exact"]) for m in same.json()["matches"]] == [("a", True)]
    assert client.get("/health").json()["images"] == 2


def test_on_duplicate_reject_sees_flips_with_all_orientations(client: TestClient) -> None:
    photo = make_photo(10)
    upload(client, encode(photo), "a")
    mirrored = encode(photo.transpose(T.FLIP_LEFT_RIGHT))
    refused = upload(client, mirrored, "b", on_duplicate="reject", all_orientations="true")
    assert refused.status_code == 409
    assert upload(client, mirrored, "b", on_duplicate="reject").status_code == 201


@pytest.mark.parametrize(
    "params",
    [{"on_duplicate": "sometimes"}, {"all_orientations": "maybe"}, {"confirm": "perhaps"}],
)
def test_bad_accuracy_parameters_are_unprocessable(client: TestClient, params: dict[str, str]) -> None:
    assert upload(client, encode(make_photo(1)), **params).status_code == 422
    assert client.get("/health").json()["images"] == 0


def test_bad_extra_hashes_are_unprocessable(client: TestClient) -> None:
    for name in ("vertical_hash", "dct_hash"):
        response = client.get("/search", params={"hash": "0" * 16, name: "xyz"})
        assert response.status_code == 422 and "16 hex digits" in response.json()["detail"]


def test_reject_exact_sees_identical_files_beyond_the_limit(client: TestClient) -> None:
    photo = make_photo(11)
    upload(client, encode(photo, "PNG", compress_level=1), "aa-same-pixels")
    exact = encode(photo, "PNG", compress_level=9)
    upload(client, exact, "zz-identical")
    response = upload(client, exact, "new", on_duplicate="reject_exact", limit=1)
    assert response.status_code == 409
    assert [(m["id"], m["exact"]) for m in response.json()["matches"]] == [("zz-identical", True)]


def test_concurrent_copies_with_reject_store_one(client: TestClient) -> None:
    data = encode(make_photo(12))
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(
            pool.map(lambda n: upload(client, data, f"c{n}", on_duplicate="reject").status_code, range(12))
        )
    assert statuses == [201] + [409] * 11
    assert client.get("/health").json()["images"] == 1


def test_existing_id_conflict_matches_the_documented_body(client: TestClient) -> None:
    upload(client, encode(make_photo(1)), "a")
    body = upload(client, encode(make_photo(2)), "a").json()
    assert DuplicateOut.model_validate(body).matches == []
