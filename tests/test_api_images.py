"""/images over HTTP: the contract's happy paths and every error."""

import json
from pathlib import Path

import httpx
import imagehash
import pytest
from fastapi.testclient import TestClient
from helpers import as_stored, encode, make_photo, upload
from PIL import Image
from pydantic import SecretStr

from app.config import Settings
from app.factory import create_app
from app.imaging.hashing import hamming, parse_hash_hex


def test_post_image_returns_the_record(client: TestClient) -> None:
    photo = make_photo(1)
    response = upload(client, encode(photo), "cat-1", json.dumps({"owner": "ann", "tags": ["x"]}))
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == "cat-1"
    assert body["hash"] == str(imagehash.dhash(photo))
    assert (body["width"], body["height"]) == (640, 480)
    assert body["metadata"] == {"owner": "ann", "tags": ["x"]}
    assert body["created_at"].endswith("Z")
    assert body["duplicates"] == [] and body["flat"] is False
    assert client.get("/images/cat-1").json() == as_stored(body)


def test_post_generates_an_id_when_absent(client: TestClient) -> None:
    first = upload(client, encode(make_photo(1))).json()
    second = upload(client, encode(make_photo(2))).json()
    assert first["id"] != second["id"] and len(first["id"]) >= 16
    assert first["metadata"] == {}


def test_duplicates_are_the_earlier_matching_images(client: TestClient) -> None:
    photo = make_photo(3)
    original = upload(client, encode(photo), "original").json()
    assert original["duplicates"] == []
    upload(client, encode(make_photo(4)), "other")
    copy = upload(client, encode(photo.resize((320, 240)), "JPEG", quality=70), "copy").json()
    assert [d["id"] for d in copy["duplicates"]] == ["original"]
    match = copy["duplicates"][0]
    assert match["distance"] <= 10
    vertical = hamming(parse_hash_hex(original["vertical_hash"]), parse_hash_hex(copy["vertical_hash"]))
    assert match["similarity"] == 1 - (match["distance"] + vertical + match["dct_distance"]) / 3 / 64
    assert match["metadata"] == {}


def test_existing_id_is_a_conflict_and_changes_nothing(client: TestClient) -> None:
    upload(client, encode(make_photo(1)), "a", '{"v": 1}')
    response = upload(client, encode(make_photo(2)), "a", '{"v": 2}')
    assert response.status_code == 409
    assert "'a'" in response.json()["detail"]
    assert client.get("/images/a").json()["metadata"] == {"v": 1}
    assert client.get("/health").json()["images"] == 1


def test_put_creates_then_replaces(client: TestClient) -> None:
    first, second = make_photo(1), make_photo(2)
    created = client.put("/images/p", files={"file": ("x", encode(first))}, data={"metadata": '{"v": 1}'})
    assert created.status_code == 201
    assert created.json()["hash"] == str(imagehash.dhash(first))
    replaced = client.put("/images/p", files={"file": ("x", encode(second))})
    assert replaced.status_code == 200
    assert replaced.json()["hash"] == str(imagehash.dhash(second))
    assert replaced.json()["metadata"] == {}
    assert client.get("/health").json()["images"] == 1
    # the old picture is no longer found, the new one is, and never as its own duplicate
    assert client.post("/search", files={"file": ("x", encode(first))}).json()["matches"] == []
    assert [
        m["id"] for m in client.post("/search", files={"file": ("x", encode(second))}).json()["matches"]
    ] == ["p"]
    assert replaced.json()["duplicates"] == []


def test_put_reports_other_matching_images(client: TestClient) -> None:
    photo = make_photo(5)
    upload(client, encode(photo), "a")
    response = client.put("/images/b", files={"file": ("x", encode(photo, "JPEG", quality=80))})
    assert [d["id"] for d in response.json()["duplicates"]] == ["a"]


def test_get_missing_image_is_404(client: TestClient) -> None:
    response = client.get("/images/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "no image with id 'nope'"}


def test_delete_removes_from_results(client: TestClient) -> None:
    photo = make_photo(6)
    upload(client, encode(photo), "gone")
    assert client.delete("/images/gone").status_code == 204
    assert client.get("/images/gone").status_code == 404
    assert client.delete("/images/gone").status_code == 404
    assert client.post("/search", files={"file": ("x", encode(photo))}).json()["matches"] == []
    assert client.get("/health").json() == {"status": "ok", "images": 0}


def test_list_pages_through_every_image_in_id_order(client: TestClient) -> None:
    ids = [f"img-{n:02d}" for n in range(7)]
    for n, image_id in enumerate(reversed(ids)):
        upload(client, encode(make_photo(n, (64, 48))), image_id)
    seen, after = [], None
    while True:
        params = {"limit": 3} | ({"after": after} if after else {})
        page = client.get("/images", params=params).json()
        seen += [item["id"] for item in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == ids
    assert client.get("/images", params={"limit": 7}).json()["next"] is None


def test_list_rejects_bad_limits(client: TestClient) -> None:
    for limit in (0, 1001, "x"):
        assert client.get("/images", params={"limit": limit}).status_code == 422


def test_image_duplicates_leave_the_image_out(client: TestClient) -> None:
    photo = make_photo(7)
    upload(client, encode(photo), "a")
    upload(client, encode(photo, "JPEG", quality=85), "b")
    upload(client, encode(make_photo(8)), "c")
    body = client.get("/images/a/duplicates").json()
    assert body["id"] == "a"
    assert [m["id"] for m in body["matches"]] == ["b"]
    assert client.get("/images/c/duplicates").json()["matches"] == []
    assert client.get("/images/zz/duplicates").status_code == 404
    assert client.get("/images/a/duplicates", params={"max_distance": 65}).status_code == 422


def test_health_counts_images(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "images": 0}
    upload(client, encode(make_photo(1)))
    assert client.get("/health").json() == {"status": "ok", "images": 1}


# --- bad input: a JSON error, never a 500, nothing stored ---------------------------------


def assert_refused(client: TestClient, response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert words in (detail if isinstance(detail, str) else json.dumps(detail))
    assert client.get("/health").json()["images"] == 0


def test_text_file_is_unsupported(client: TestClient) -> None:
    assert_refused(client, upload(client, b"just some text"), 415, "not an image")


def test_truncated_jpeg_is_unprocessable(client: TestClient) -> None:
    data = encode(make_photo(1), "JPEG")
    assert_refused(client, upload(client, data[: len(data) // 2]), 422, "could not be decoded")


def test_file_over_the_byte_limit_is_too_large(tmp_path: Path) -> None:
    data = encode(make_photo(1), "PNG")
    with TestClient(create_app(Settings(data_dir=tmp_path, max_upload_bytes=len(data) - 1))) as small:
        assert_refused(small, upload(small, data), 413, "")
        big_body = upload(small, data + b"\0" * 200_000)  # the whole body is over limit + overhead
        assert_refused(small, big_body, 413, "")
        assert upload(small, encode(make_photo(1, (32, 32)))).status_code == 201


def test_too_many_pixels_is_too_large(tmp_path: Path) -> None:
    data = encode(Image.new("L", (1000, 1000)), "PNG")
    with TestClient(create_app(Settings(data_dir=tmp_path, max_pixels=999_999))) as small:
        assert_refused(small, upload(small, data), 413, "1000x1000")


def test_missing_file_is_unprocessable(client: TestClient) -> None:
    assert_refused(client, client.post("/images", data={"id": "x"}), 422, "file")


def test_body_that_is_not_multipart_is_unprocessable(client: TestClient) -> None:
    response = client.post("/images", content=b"\x89PNG...", headers={"content-type": "image/png"})
    assert_refused(client, response, 422, "file")


def test_metadata_must_be_a_small_json_object(client: TestClient) -> None:
    data = encode(make_photo(1))
    assert_refused(client, upload(client, data, metadata="[1, 2]"), 422, "JSON object")
    assert_refused(client, upload(client, data, metadata="{nope"), 422, "not valid JSON")
    too_big = json.dumps({"k": "x" * 16 * 1024})
    assert_refused(client, upload(client, data, metadata=too_big), 422, "16384 bytes")


def test_bad_ids_are_unprocessable(client: TestClient) -> None:
    data = encode(make_photo(1))
    assert_refused(client, upload(client, data, "x" * 257), 422, "1 to 256")
    assert_refused(client, upload(client, data, "a/b"), 422, "'/'")
    assert_refused(client, upload(client, data, "tab\there"), 422, "control")
    assert_refused(client, upload(client, data, ".."), 422, "'..'")
    assert upload(client, data, "x" * 256).status_code == 201


def test_unknown_route_is_a_json_404(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404 and "detail" in response.json()


def test_batch_is_an_id_like_any_other(client: TestClient) -> None:
    """POST /images/batch is the batch route; every route of an image reaches the image 'batch'."""
    data = encode(make_photo(1))
    assert client.put("/images/batch", files={"file": ("x", data)}).status_code == 201
    assert client.get("/images/batch").json()["id"] == "batch"
    assert client.get("/images/batch/duplicates").status_code == 200
    assert [item["id"] for item in client.get("/images").json()["items"]] == ["batch"]
    assert client.put("/images/batch", files={"file": ("x", encode(make_photo(2)))}).status_code == 200
    assert client.delete("/images/batch").status_code == 204
    assert client.get("/images/batch").status_code == 404
    assert upload(client, data, "batch").status_code == 201  # POST /images with the id in the form


def test_every_json_answer_ends_with_a_newline(client: TestClient, tmp_path: Path) -> None:
    """So that a shell prompt after curl starts on its own line."""
    answers = [
        client.get("/health"),
        client.get("/health/ready"),
        upload(client, encode(make_photo(1)), "a"),
        client.get("/images/a"),
        client.get("/images/missing"),  # a domain error
        client.get("/images", params={"limit": 0}),  # a validation error
        client.patch("/images/a"),  # 405
        client.get("/nowhere"),  # 404 of the router
        client.post("/images", content=b"x" * 10, headers={"content-type": "text/plain"}),
    ]
    with TestClient(
        create_app(Settings(data_dir=tmp_path / "k", api_key=SecretStr("k" * 16), max_upload_bytes=10))
    ) as keyed:
        answers.append(keyed.get("/images"))  # 401 from the key guard
        big = b"x" * 1_000_000
        answers.append(keyed.post("/images", content=big, headers={"x-api-key": "k" * 16}))  # 413, body limit
    statuses = [answer.status_code for answer in answers]
    assert statuses == [200, 200, 201, 200, 404, 422, 405, 404, 422, 401, 413]
    for answer in answers:
        assert answer.headers["content-type"] == "application/json"
        assert answer.content.endswith(b"}\n") and answer.content.count(b"\n") == 1, answer.content


def test_health_answers_head_for_probes(client: TestClient) -> None:
    for path in ("/health", "/health/live", "/health/ready"):
        response = client.head(path)
        assert (response.status_code, response.content) == (200, b""), path


def test_an_unexpected_error_is_a_500_that_closes_the_connection(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a fault")

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        monkeypatch.setattr(client.app.state.service, "get", broken)  # type: ignore[attr-defined]
        response = client.get("/images/a")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}
    assert response.headers["connection"] == "close"
