"""POST /images/batch: hashes (JSON) or files (multipart), one transaction, all or nothing."""

import asyncio
import json
import logging
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import httpx
import imagehash
import pytest
from fastapi.testclient import TestClient
from golden import FILES
from helpers import SHARED_IMAGES, as_stored, encode, make_photo, needs_shared, search, upload
from PIL import Image, ImageOps

from app.api.routes import batch as batch_routes
from app.api.schemas import MAX_BATCH_FILES, MAX_BATCH_ITEMS
from app.config import Settings
from app.evaluation import _crop, _save, _screenshot, viewed
from app.factory import create_app
from app.imaging import HASHING_VERSION, MAX_CUTS, hash_hex, hash_image_bytes
from app.models import HashItem


def spread(n: int) -> str:
    """A distinct 64-bit hash for each n, far from the others."""
    return f"{(n * 0x9E3779B97F4A7C15) % (1 << 64):016x}"


def post_files(client: TestClient, datas: list[bytes], **form: list[str]) -> httpx.Response:
    files = [("file", (f"f{n}", data)) for n, data in enumerate(datas)]
    response: httpx.Response = client.post("/images/batch", files=files, data=form)
    return response


def assert_nothing_stored(client: TestClient, before: int = 0) -> None:
    assert client.get("/health").json()["images"] == before


# --- JSON: hashes computed elsewhere ----------------------------------------------------------


def test_hashes_are_stored_and_returned_in_order(client: TestClient) -> None:
    items = [
        {"id": "a", "hash": spread(1), "metadata": {"owner": "ann"}},
        {"hash": spread(2).upper()},
        {"id": "c", "hash": spread(3), "metadata": {}},
    ]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 201, response.text
    body = response.json()["items"]
    assert [r["hash"] for r in body] == [spread(1), spread(2), spread(3)]
    assert body[0]["id"] == "a" and body[2]["id"] == "c" and len(body[1]["id"]) >= 16
    assert body[0]["metadata"] == {"owner": "ann"} and body[1]["metadata"] == {}
    assert body[0]["width"] is None and body[0]["height"] is None
    assert "duplicates" not in body[0]
    assert client.get("/health").json()["images"] == 3
    assert client.get("/images/a").json() == body[0]
    found = client.get("/search", params={"hash": spread(3)}).json()["matches"]
    assert [m["id"] for m in found] == ["c"]


def test_a_hash_batch_is_found_by_an_uploaded_picture(client: TestClient) -> None:
    photo = make_photo(4)
    items = [{"id": "photo", "hash": str(imagehash.dhash(photo))}, {"id": "other", "hash": spread(9)}]
    assert client.post("/images/batch", json={"items": items}).status_code == 201
    assert [m["id"] for m in search(client, encode(photo, "JPEG")).json()["matches"]] == ["photo"]


def test_hash_items_keep_their_other_hashes_and_hashing_version(client: TestClient) -> None:
    items = [
        {"id": "full", "hash": spread(1), "vertical_hash": spread(2).upper(), "dct_hash": spread(3)},
        {"id": "old", "hash": spread(4), "hashing_version": 1},
        {"id": "bare", "hash": spread(5)},
    ]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 201, response.text
    full, old, bare = response.json()["items"]
    assert (full["vertical_hash"], full["dct_hash"]) == (spread(2), spread(3))
    assert (bare["vertical_hash"], bare["dct_hash"]) == (None, None)
    assert old["hashing_version"] == 1 and bare["hashing_version"] == HASHING_VERSION
    assert client.get("/images/full").json() == full
    assert (bare["centre"], bare["cuts"]) == (None, [])


def part(n: int) -> dict[str, str]:
    return {"hash": spread(n), "vertical_hash": spread(n + 1), "dct_hash": spread(n + 2)}


def test_hash_items_keep_their_centre_and_cuts(client: TestClient) -> None:
    cuts = [part(20 + 10 * n) for n in range(MAX_CUTS)]
    items = [{"id": "parts", "hash": spread(1), "centre": part(10), "cuts": cuts}]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 201, response.text
    (stored,) = response.json()["items"]
    assert (stored["centre"], stored["cuts"]) == (part(10), cuts)
    assert client.get("/images/parts").json() == stored
    last = cuts[-1]
    found = client.get("/search", params={"hash": last["hash"], "dct_hash": last["dct_hash"]}).json()
    assert [m["id"] for m in found["matches"]] == ["parts"]


Edit = Callable[[Image.Image], bytes] | None  # None: the original file


def cropped_off_centre(picture: Image.Image) -> bytes:
    return _save(_crop(picture, 0.10, share_left=0.2, share_top=0.9))


def in_a_screenshot(picture: Image.Image) -> bytes:
    return _save(_screenshot(picture), "PNG")


@needs_shared
@pytest.mark.parametrize(
    ("stored", "searched"),
    [(None, cropped_off_centre), (in_a_screenshot, None)],
    ids=["the original's centre finds a crop", "a screenshot's cuts find the original"],
)
def test_hashes_moved_to_another_doppel_keep_finding_what_their_parts_find(
    client: TestClient, stored: Edit, searched: Edit
) -> None:
    """A record's hashes, as GET /images/{id} returns them, stored again by a JSON batch: with its
    centre and cuts it is found where its whole picture's hashes alone are not."""
    original = (SHARED_IMAGES / "dev" / "0058.jpg").read_bytes()
    picture = ImageOps.contain(viewed(original), (1024, 1024))
    assert upload(client, original if stored is None else stored(picture), image_id="up").status_code == 201
    record = client.get("/images/up").json()
    assert client.delete("/images/up").status_code == 204
    whole = {key: record[key] for key in ("hash", "vertical_hash", "dct_hash")}
    items = [
        {"id": "whole", **whole},
        {"id": "parts", **whole, "centre": record["centre"], "cuts": record["cuts"]},
    ]
    assert client.post("/images/batch", json={"items": items}).status_code == 201
    query = original if searched is None else searched(picture)
    assert [m["id"] for m in search(client, query).json()["matches"]] == ["parts"]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"centre": {**part(10), "vertical_hash": "xyz"}}, "centre.vertical_hash must be 16 hex digits"),
        ({"cuts": [part(20), {**part(30), "dct_hash": "0" * 17}]}, "cuts[1].dct_hash must be 16 hex digits"),
    ],
)
def test_bad_part_hashes_are_named(client: TestClient, item: dict[str, object], reason: str) -> None:
    items = [{"id": "ok", "hash": spread(1)}, {"id": "bad", "hash": spread(2), **item}]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 422
    (fault,) = response.json()["detail"]
    assert (fault["index"], fault["id"]) == (1, "bad") and fault["reason"].startswith(reason)
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("item", "loc"),
    [
        ({"cuts": [part(3 * n) for n in range(MAX_CUTS + 1)]}, ["body", "items", 0, "cuts"]),
        ({"centre": {"hash": spread(1)}}, ["body", "items", 0, "centre", "vertical_hash"]),
    ],
    ids=["more cuts than a picture has", "a centre without its other hashes"],
)
def test_part_hashes_are_shaped_as_doppel_returns_them(
    client: TestClient, item: dict[str, object], loc: list[object]
) -> None:
    response = client.post("/images/batch", json={"items": [{"hash": spread(1), **item}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == loc
    assert_nothing_stored(client)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("vertical_hash", "abc", "vertical_hash must be 16 hex digits"),
        ("dct_hash", "0" * 17, "dct_hash must be 16 hex digits"),
        ("hashing_version", 0, "hashing_version must be 1 to"),
        ("hashing_version", HASHING_VERSION + 1, "hashing_version must be 1 to"),
    ],
)
def test_bad_other_hashes_are_named(client: TestClient, field: str, value: object, reason: str) -> None:
    items = [{"id": "ok", "hash": spread(1)}, {"id": "bad", "hash": spread(2), field: value}]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 422
    (fault,) = response.json()["detail"]
    assert (fault["index"], fault["id"]) == (1, "bad") and fault["reason"].startswith(reason)
    assert_nothing_stored(client)


@pytest.mark.parametrize("value", ["1", 1.5, True])
def test_a_hashing_version_must_be_a_json_integer(client: TestClient, value: object) -> None:
    response = client.post("/images/batch", json={"items": [{"hash": spread(1), "hashing_version": value}]})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "items", 0, "hashing_version"]
    assert_nothing_stored(client)


def test_a_made_up_hash_only_record_is_refuted_by_its_dct_hash(client: TestClient) -> None:
    picture = (FILES / "large.jpg").read_bytes()
    true = hash_image_bytes(picture, max_pixels=10**8)
    items = [
        # 3 bits from the picture's dHash, but nothing like it in its low frequencies
        {
            "id": "made-up",
            "hash": hash_hex(true.dhash ^ 0b111),
            "dct_hash": hash_hex(~true.dct_hash % (1 << 64)),
        },
        {
            "id": "true",
            "hash": hash_hex(true.dhash),
            "vertical_hash": hash_hex(true.dhash_vertical),
            "dct_hash": hash_hex(true.dct_hash),
        },
        {"id": "dhash-only", "hash": hash_hex(true.dhash ^ 0b111)},  # 3 bits: a dHash alone needs 4
    ]
    assert client.post("/images/batch", json={"items": items}).status_code == 201
    matches = search(client, picture).json()["matches"]
    assert [(m["id"], m["dct_distance"]) for m in matches] == [("true", 0), ("dhash-only", None)]
    unconfirmed = search(client, picture, confirm=False).json()["matches"]
    assert [(m["id"], m["dct_distance"]) for m in unconfirmed] == [
        ("true", 0),
        ("dhash-only", None),
        ("made-up", 64),
    ]
    # a quarter turn of the picture is found through the vertical hash the batch gave
    turned = search(
        client, encode(Image.open(BytesIO(picture)).rotate(90, expand=True), "PNG"), all_orientations=True
    )
    assert "true" in [m["id"] for m in turned.json()["matches"]]


def test_bad_items_are_all_named_and_nothing_is_stored(client: TestClient) -> None:
    items = [
        {"id": "ok", "hash": spread(1)},
        {"id": "short", "hash": "abc"},
        {"id": "a/b", "hash": spread(2)},
        {"id": "big", "hash": spread(3), "metadata": {"k": "x" * 16 * 1024}},
        {"id": "ok", "hash": spread(4)},
    ]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 422
    faults = response.json()["detail"]
    assert [(f["index"], f["id"], f["status"]) for f in faults] == [
        (1, "short", 422),
        (2, "a/b", 422),
        (3, "big", 422),
        (4, "ok", 422),
    ]
    assert "16 hex digits" in faults[0]["reason"] and "'/'" in faults[1]["reason"]
    assert "16384 bytes" in faults[2]["reason"] and "item 0" in faults[3]["reason"]
    assert_nothing_stored(client)


def test_an_existing_id_is_a_conflict_and_stores_nothing(client: TestClient) -> None:
    upload(client, encode(make_photo(1)), "taken")
    items = [{"id": "new", "hash": spread(1)}, {"id": "taken", "hash": spread(2)}]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 409
    assert response.json()["detail"] == [
        {"index": 1, "id": "taken", "status": 409, "reason": "an image with id 'taken' already exists"}
    ]
    assert client.get("/images/new").status_code == 404
    assert_nothing_stored(client, before=1)


def test_faults_of_different_kinds_make_a_422(client: TestClient) -> None:
    upload(client, encode(make_photo(1)), "taken")
    items = [{"id": "taken", "hash": spread(2)}, {"id": "x", "hash": "nope"}]
    response = client.post("/images/batch", json={"items": items})
    # the id check against the store comes after the items themselves are valid
    assert response.status_code == 422
    assert [f["index"] for f in response.json()["detail"]] == [1]
    assert_nothing_stored(client, before=1)


def test_malformed_json_bodies_are_unprocessable(client: TestClient) -> None:
    cases = [
        (b"{not json", "json_invalid"),
        (json.dumps({"items": []}).encode(), "too_short"),
        (json.dumps({"items": [{"hash": 12}]}).encode(), "string_type"),
        (json.dumps({"items": [{"id": "x"}]}).encode(), "missing"),
        (json.dumps({"items": [{"hash": spread(1), "metadata": [1]}]}).encode(), "dict_type"),
        (json.dumps([{"hash": spread(1)}]).encode(), "model_type"),
    ]
    for body, kind in cases:
        response = client.post("/images/batch", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, body
        assert kind in {error["type"] for error in response.json()["detail"]}
    missing = client.post("/images/batch", json={"items": [{"hash": spread(1)}, {"id": "x"}]}).json()[
        "detail"
    ]
    assert missing[0]["loc"] == ["body", "items", 1, "hash"]
    assert_nothing_stored(client)


def test_at_most_ten_thousand_hashes(client: TestClient) -> None:
    items = [{"hash": spread(n)} for n in range(MAX_BATCH_ITEMS + 1)]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "too_long"
    assert_nothing_stored(client)
    assert client.post("/images/batch", json={"items": items[:MAX_BATCH_ITEMS]}).status_code == 201
    assert client.get("/health").json()["images"] == MAX_BATCH_ITEMS


def test_a_large_refused_batch_is_answered_briefly_without_its_input(client: TestClient) -> None:
    """10,000 items at fault, each with a long value: the answer names the first 100, says how many
    more there are, and echoes none of the input; the same for faults found by the schema."""
    long_value = "x" * 5000
    items = [{"hash": long_value, "metadata": {"note": long_value}} for _ in range(MAX_BATCH_ITEMS)]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == 101
    assert detail[0] == {
        "index": 0,
        "id": None,
        "status": 422,
        "reason": "hash must be 16 hex digits (a 64-bit hash), got 5000 characters",
    }
    assert detail[-1]["reason"] == "and 9,900 more not listed (10,000 in all)"
    assert long_value[:100] not in response.text and len(response.content) < 30_000

    items = [{"hash": [long_value], "metadata": long_value} for _ in range(MAX_BATCH_ITEMS)]
    response = client.post("/images/batch", json={"items": items})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == 101 and detail[0]["loc"] == ["body", "items", 0, "hash"]
    assert detail[-1] == {
        "type": "too_many_errors",
        "loc": [],
        "msg": "and 19,900 more not listed (20,000 in all)",
    }
    assert all("input" not in entry and len(entry["msg"]) <= 300 for entry in detail)
    assert long_value[:100] not in response.text and len(response.content) < 30_000
    assert_nothing_stored(client)


def test_hash_batches_are_validated_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large body's validation must not stall every other request: it runs on a worker thread."""
    on_the_loop: list[bool] = []
    validate = batch_routes._hash_items

    def watched(body: bytes) -> list[HashItem]:
        try:
            asyncio.get_running_loop()
            on_the_loop.append(True)
        except RuntimeError:
            on_the_loop.append(False)
        return validate(body)

    monkeypatch.setattr(batch_routes, "_hash_items", watched)
    assert client.post("/images/batch", json={"items": [{"hash": spread(1)}]}).status_code == 201
    assert client.post("/images/batch", json={"items": [{"hash": "bad"}]}).status_code == 422
    assert on_the_loop == [False, False]


def test_other_content_types_are_unsupported(client: TestClient) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = client.post("/images/batch", content=b"items=1", headers={"content-type": content_type})
        assert response.status_code == 415
        assert "multipart/form-data" in response.json()["detail"]
    assert_nothing_stored(client)


# --- multipart: files ------------------------------------------------------------------------


def test_files_are_stored_with_their_duplicates(client: TestClient) -> None:
    photo, other = make_photo(1), make_photo(2)
    upload(client, encode(photo), "stored-before")
    datas = [encode(photo, "JPEG", quality=80), encode(other), encode(other.resize((320, 240)), "JPEG")]
    response = post_files(client, datas, id=["copy", "", "other-copy"], metadata=['{"n": 1}', "", ""])
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert items[0]["id"] == "copy" and items[2]["id"] == "other-copy" and len(items[1]["id"]) >= 16
    assert items[0]["metadata"] == {"n": 1} and items[1]["metadata"] == {}
    assert items[1]["hash"] == str(imagehash.dhash(other))
    assert (items[1]["width"], items[1]["height"]) == (640, 480)
    # the earlier files of the batch count as stored before
    assert [d["id"] for d in items[0]["duplicates"]] == ["stored-before"]
    assert items[1]["duplicates"] == []
    assert [d["id"] for d in items[2]["duplicates"]] == [items[1]["id"]]
    assert client.get("/health").json()["images"] == 4
    assert client.get("/images/copy").json() == as_stored(items[0])


def test_files_without_id_or_metadata_parts(client: TestClient) -> None:
    response = post_files(client, [encode(make_photo(n, (64, 48))) for n in range(3)])
    assert response.status_code == 201
    assert len({item["id"] for item in response.json()["items"]}) == 3


def test_bad_files_are_all_named_and_nothing_is_stored(client: TestClient) -> None:
    good = encode(make_photo(1))
    truncated = encode(make_photo(2), "JPEG")[:1000]
    response = post_files(client, [good, b"plain text", truncated, good], id=["a", "b", "c", "a"])
    assert response.status_code == 422  # 415 and 422 faults together
    faults = response.json()["detail"]
    assert [(f["index"], f["id"], f["status"]) for f in faults] == [
        (1, "b", 415),
        (2, "c", 422),
        (3, "a", 422),
    ]
    assert "not an image" in faults[0]["reason"] and "could not be decoded" in faults[1]["reason"]
    assert_nothing_stored(client)


def test_only_unsupported_files_make_a_415(client: TestClient) -> None:
    response = post_files(client, [encode(make_photo(1)), b"GIF? no"])
    assert response.status_code == 415
    assert [f["index"] for f in response.json()["detail"]] == [1]
    assert_nothing_stored(client)


def test_a_taken_id_refuses_every_file(client: TestClient) -> None:
    upload(client, encode(make_photo(1)), "taken")
    response = post_files(client, [encode(make_photo(2)), encode(make_photo(3))], id=["fresh", "taken"])
    assert response.status_code == 409
    assert [(f["index"], f["id"]) for f in response.json()["detail"]] == [(1, "taken")]
    assert client.get("/images/fresh").status_code == 404
    assert_nothing_stored(client, before=1)


def test_bad_metadata_part_is_named(client: TestClient) -> None:
    response = post_files(client, [encode(make_photo(1)), encode(make_photo(2))], metadata=["", "[1]"])
    assert response.status_code == 422
    assert (
        response.json()["detail"][0]["index"] == 1 and "JSON object" in response.json()["detail"][0]["reason"]
    )
    assert_nothing_stored(client)


def test_id_and_metadata_parts_must_pair_with_the_files(client: TestClient) -> None:
    datas = [encode(make_photo(1)), encode(make_photo(2))]
    response = post_files(client, datas, id=["only-one"])
    assert response.status_code == 422 and "one `id` text part per `file` part" in response.json()["detail"]
    response = post_files(client, datas, metadata=["{}", "{}", "{}"])
    assert response.status_code == 422 and "`metadata`" in response.json()["detail"]
    files = [("file", ("a", datas[0])), ("id", ("id.txt", b"x"))]
    response = client.post("/images/batch", files=files)
    assert response.status_code == 422 and "must be text" in response.json()["detail"]
    assert_nothing_stored(client)


def test_multipart_without_files_is_unprocessable(client: TestClient) -> None:
    response = client.post("/images/batch", data={"id": "x"}, files=[("other", ("a", b"x"))])
    assert response.status_code == 422 and "`file` part" in response.json()["detail"]
    response = client.post("/images/batch", data={"file": "not a file"}, files=[("other", ("a", b"x"))])
    assert response.status_code == 422 and "must be a file" in response.json()["detail"]
    assert_nothing_stored(client)


def test_a_body_that_is_not_well_formed_multipart_is_a_bad_request(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"content-type": "multipart/form-data; boundary=B"}
    with caplog.at_level(logging.WARNING):
        response = client.post("/images/batch", content=b"this is not multipart", headers=headers)
    assert response.status_code == 400 and "multipart" in response.json()["detail"]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("python_multipart")] == []
    no_boundary = {"content-type": "multipart/form-data"}
    response = client.post("/images/batch", content=b"--B\r\n", headers=no_boundary)
    assert response.status_code == 400 and "boundary" in response.json()["detail"]
    assert_nothing_stored(client)


def test_at_most_a_hundred_files(client: TestClient) -> None:
    tiny = encode(make_photo(1, (16, 12)))
    response = post_files(client, [tiny] * (MAX_BATCH_FILES + 1))
    assert response.status_code == 400 and "Too many files" in response.json()["detail"]
    assert_nothing_stored(client)
    assert post_files(client, [tiny] * MAX_BATCH_FILES).status_code == 201


def test_size_limits(tmp_path: Path) -> None:
    small, big = encode(make_photo(1, (32, 32))), encode(make_photo(2))
    settings = Settings(data_dir=tmp_path, max_upload_bytes=len(big) - 1, max_batch_bytes=3 * len(big))
    with TestClient(create_app(settings)) as client:
        response = post_files(client, [small, big])  # each file is held to max_upload_bytes
        assert response.status_code == 413
        assert [(f["index"], f["status"]) for f in response.json()["detail"]] == [(1, 413)]
        response = post_files(client, [big] * 4)  # the whole body to max_batch_bytes
        assert response.status_code == 413 and "limit" in response.json()["detail"]
        assert_nothing_stored(client)
        # the batch route's larger limit does not leak to the single upload
        assert upload(client, big).status_code == 413
        assert post_files(client, [small, small]).status_code == 201


def test_openapi_documents_both_bodies(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/images/batch"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"201", "400", "409", "413", "415", "422"} <= set(operation["responses"])
