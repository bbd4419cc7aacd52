"""Odd and hostile input: the generated corpus (tests/hostile_corpus.py) and odd requests.

Every refusal is the documented 4xx with a JSON `detail` saying what is wrong; nothing is stored;
the service keeps serving. Valid but unusual images are stored with their displayed size.
"""

import http.client
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import as_stored, encode, make_photo, upload
from hostile_corpus import Accepted, Refused, accepted, bombs, refused
from live_server import LiveServer, has_proc, peak_rss_bytes
from PIL import ImageFile, TiffImagePlugin

from app.config import Settings
from app.errors import ImageTooLarge
from app.factory import create_app
from app.imaging.hashing import hamming, hash_image_bytes

REFUSED = refused()
ACCEPTED = accepted()
CASES: list[Refused | Accepted] = [*REFUSED, *ACCEPTED]
PHOTO = encode(make_photo(1, (64, 48)))


def detail_of(response: httpx.Response) -> str:
    """The JSON error's detail, as text (FastAPI's validation errors are a list of objects)."""
    detail = response.json()["detail"]
    return detail if isinstance(detail, str) else json.dumps(detail)


def assert_refused(client: TestClient, response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert words in detail_of(response)
    assert client.get("/health").json() == {"status": "ok", "images": 0}  # nothing stored, still serving


# --- the corpus ------------------------------------------------------------------------------

SENDERS: dict[str, Callable[[TestClient, bytes], httpx.Response]] = {
    "POST /images": lambda client, data: upload(client, data, "hostile"),
    "PUT /images/{id}": lambda client, data: client.put("/images/hostile", files={"file": ("f", data)}),
    "POST /search": lambda client, data: client.post("/search", files={"file": ("f", data)}),
}


def test_the_corpus_is_big_enough() -> None:
    assert len(REFUSED) + len(ACCEPTED) >= 30
    assert len({case.name for case in CASES}) == len(CASES)


@pytest.mark.parametrize("sender", SENDERS)
@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.name)
def test_hostile_upload_is_refused(client: TestClient, case: Refused, sender: str) -> None:
    response = SENDERS[sender](client, case.data)
    assert_refused(client, response, case.status, case.words)
    assert client.get("/images/hostile").status_code == 404


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda case: case.name)
def test_unusual_valid_image_is_accepted(client: TestClient, case: Accepted) -> None:
    response = upload(client, case.data, "odd")
    assert response.status_code == 201, response.text
    record = response.json()
    assert (record["width"], record["height"]) == case.size
    assert client.get("/images/odd").json() == as_stored(record)
    found = client.post("/search", files={"file": ("f", case.data)}).json()["matches"]
    assert [(m["id"], m["distance"]) for m in found] == [("odd", 0)]


def test_every_exif_orientation_hashes_as_displayed(client: TestClient) -> None:
    """The corpus stores each orientation's pixels turned so that every one displays the same photo."""
    hashes = [
        int(upload(client, case.data).json()["hash"], 16)
        for case in ACCEPTED
        if case.name.startswith("exif orientation")
    ]
    assert len(hashes) == 8
    assert max(hamming(hashes[0], other) for other in hashes) <= 4


def test_the_whole_corpus_on_one_service(settings: Settings) -> None:
    """One service takes every upload in turn; afterwards it holds exactly the valid ones, serves as
    before, and its data folder holds nothing but the SQLite store (no id or file name became a path)."""
    with TestClient(create_app(settings)) as client:
        for n, case in enumerate(CASES):
            # Names a careless service might turn into paths, for the id and the file name.
            form = {"id": f"..{n}" if n % 2 else f"{n}.sqlite3"}
            response = client.post("/images", files={"file": (f"../../{case.name}", case.data)}, data=form)
            assert response.status_code == (201 if isinstance(case, Accepted) else case.status), case.name
        assert client.get("/health").json()["images"] == len(ACCEPTED)
        assert upload(client, PHOTO, "after").status_code == 201
        found = client.post("/search", files={"file": ("f", PHOTO)}).json()["matches"]
        assert [m["id"] for m in found] == ["after"]
    store_files = {
        "doppel.sqlite3",
        "doppel.sqlite3-wal",
        "doppel.sqlite3-shm",
        "doppel.sqlite3-reserve",
        "snapshots",
    }
    assert {p.name for p in settings.data_dir.iterdir()} <= store_files


class PixelsDecoded(BaseException):
    """Raised by a patched Pillow on decoding; a BaseException, so no `except Exception` hides it."""


def test_bombs_are_refused_before_any_pixel_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    def decode(self: object) -> None:
        raise PixelsDecoded

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "load", decode)
    for data in bombs():
        with pytest.raises(ImageTooLarge):
            hash_image_bytes(data, max_pixels=100_000_000)


@pytest.mark.skipif(not has_proc, reason="reads the server's peak memory from /proc (Linux)")
def test_bombs_are_refused_without_growing_memory(tmp_path: Path) -> None:
    """Decoding one 60000x60000 image would take at least 3.6 GB; the refusals must not move the
    server's peak resident memory (VmHWM) past its level after a warm-up."""
    with LiveServer(tmp_path) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        # Warm up on small images of the bombs' formats, so that their readers are loaded already.
        for fmt in ("JPEG", "PNG", "GIF", "TIFF", "BMP"):
            small = encode(make_photo(1, (64, 48)), fmt)
            assert http.post("/search", files={"file": ("f", small)}).status_code == 200
        before = peak_rss_bytes(server.pid)
        statuses = {http.post("/images", files={"file": ("f", data)}).status_code for data in bombs() * 3}
        grown = peak_rss_bytes(server.pid) - before
        assert statuses == {413}
        assert grown < 32 * 1024 * 1024, f"peak memory grew by {grown / 2**20:.0f} MiB"
        assert http.get("/health").json() == {"status": "ok", "images": 0}


# --- odd requests ----------------------------------------------------------------------------


def multipart(*parts: bytes, boundary: bytes = b"B") -> dict[str, Any]:
    """httpx arguments for a hand-made multipart body (each part given with its headers)."""
    body = (
        b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts) + b"--" + boundary + b"--\r\n"
    )
    return {
        "content": body,
        "headers": {"content-type": f"multipart/form-data; boundary={boundary.decode()}"},
    }


def file_part(data: bytes, name: bytes = b"file") -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"; filename="f"\r\n\r\n' + data


ODD_BODIES: dict[str, tuple[dict[str, Any], int, str]] = {
    "raw image, not multipart": ({"content": PHOTO, "headers": {"content-type": "image/png"}}, 422, "file"),
    "json": ({"json": {"file": "aGVsbG8="}}, 422, "file"),
    "url-encoded form": ({"data": {"id": "x"}}, 422, "file"),
    "no body at all": ({}, 422, "file"),
    "multipart without a boundary": (
        {"content": b"--B\r\n", "headers": {"content-type": "multipart/form-data"}},
        400,
        "boundary",
    ),
    "broken multipart": (
        {"content": b"this is not multipart", "headers": {"content-type": "multipart/form-data; boundary=B"}},
        400,
        "multipart",
    ),
    "multipart cut before its end": (
        {
            "content": b"--B\r\n" + file_part(PHOTO)[:100],
            "headers": {"content-type": "multipart/form-data; boundary=B"},
        },
        422,
        "file",
    ),
    "file sent as a text field": (
        multipart(b'Content-Disposition: form-data; name="file"\r\n\r\nabc'),
        422,
        "file",
    ),
    "2000 fields": (
        multipart(*[b'Content-Disposition: form-data; name="f%d"\r\n\r\nv' % i for i in range(2000)]),
        400,
        "Too many fields",
    ),
    "2000 files": (multipart(*[file_part(b"v", b"f%d" % i) for i in range(2000)]), 400, "Too many files"),
    "a 200 kB part header": (
        multipart(
            b'Content-Disposition: form-data; name="file"; filename="f"\r\nX-Junk: '
            + b"j" * 200_000
            + b"\r\n\r\n"
        ),
        400,
        "multipart",
    ),
}


# Starlette leaves the temporary file of a part cut short unclosed; CPython closes it as soon as
# the request is done with it, with a ResourceWarning (pytest makes warnings errors).
_UNCLOSED_SPOOL = pytest.mark.filterwarnings(
    "ignore:Unclosed file <tempfile.SpooledTemporaryFile:ResourceWarning"
)


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=_UNCLOSED_SPOOL) if "cut before" in name else name for name in ODD_BODIES],
)
def test_odd_body_is_refused(client: TestClient, name: str) -> None:
    request, status, words = ODD_BODIES[name]
    assert_refused(client, client.post("/images", **request), status, words)


BAD_METADATA = {
    "a list": ("[1, 2]", "JSON object"),
    "a number": ("1", "JSON object"),
    "a string": ('"text"', "JSON object"),
    "null": ("null", "JSON object"),
    "not JSON": ("{nope", "not valid JSON"),
    "NaN": ('{"a": NaN}', "NaN is not allowed"),
    "Infinity": ('{"a": -Infinity}', "Infinity is not allowed"),
    "a number beyond a double": ('{"a": 1e999}', "finite"),
    "33 levels": ('{"a":' + "[" * 32 + "]" * 32 + "}", "32 levels"),
    "5000 levels": ('{"a":' + "[" * 5000 + "]" * 5000 + "}", "32 levels"),
    "a lone surrogate value": ('{"a": "\\ud800"}', "surrogate"),
    "a lone surrogate key": ('{"\\udfff": 1}', "surrogate"),
    "over 16 KiB": (json.dumps({"k": "x" * 16 * 1024}), "16384 bytes"),
}


@pytest.mark.parametrize("name", BAD_METADATA)
def test_bad_metadata_is_refused(client: TestClient, name: str) -> None:
    metadata, words = BAD_METADATA[name]
    assert_refused(client, upload(client, PHOTO, "m", metadata), 422, words)
    response = client.put("/images/m", files={"file": ("f", PHOTO)}, data={"metadata": metadata})
    assert_refused(client, response, 422, words)


def test_metadata_at_the_limits_round_trips(client: TestClient) -> None:
    deepest = {"a": json.loads("[" * 31 + "]" * 31)}  # the object and 31 lists: 32 levels
    unicode = {"名前": "🐈 \u202e", "n": -1.5e308, "big": 2**70, "none": None}
    for image_id, metadata in (("deep", deepest), ("unicode", unicode)):
        response = upload(client, PHOTO, image_id, json.dumps(metadata))
        assert response.status_code == 201, response.text
        assert client.get(f"/images/{image_id}").json()["metadata"] == metadata


BAD_FORM_IDS = {
    "5000 characters": ("x" * 5000, "1 to 256"),
    "a slash": ("a/b", "'/'"),
    "a NUL": ("\x00abc", "control"),
    "a newline": ("a\nb", "control"),
    "a C1 control": ("a\x85b", "control"),
}


@pytest.mark.parametrize("name", BAD_FORM_IDS)
def test_bad_form_id_is_refused(client: TestClient, name: str) -> None:
    image_id, words = BAD_FORM_IDS[name]
    assert_refused(client, upload(client, PHOTO, image_id), 422, words)


BAD_QUERIES = [
    ("/images", {"limit": "0"}, "limit"),
    ("/images", {"limit": "-1"}, "limit"),
    ("/images", {"limit": "1001"}, "limit"),
    ("/images", {"limit": "1e3"}, "limit"),
    ("/images", {"limit": ""}, "limit"),
    ("/images", {"limit": "ten"}, "limit"),
    ("/images", {"after": "x" * 300}, "after"),
    ("/search", {"hash": "0" * 16, "max_distance": "65"}, "max_distance"),
    ("/search", {"hash": "0" * 16, "max_distance": "-1"}, "max_distance"),
    ("/search", {"hash": "0" * 16, "max_distance": "1.5"}, "max_distance"),
    ("/search", {"hash": "0" * 16, "limit": "0"}, "limit"),
    ("/search", {}, "hash"),
    ("/search", {"hash": ""}, "16 hex digits"),
    ("/search", {"hash": "g" * 16}, "16 hex digits"),
    ("/search", {"hash": "0" * 17}, "16 hex digits"),
    ("/search", {"hash": "\uff10" * 16}, "16 hex digits"),  # full-width digits
    ("/search", {"hash": "0" * 15 + "\x00"}, "16 hex digits"),
    ("/images/x/duplicates", {"max_distance": "x"}, "max_distance"),
]


@pytest.mark.parametrize(("path", "params", "words"), BAD_QUERIES)
def test_bad_query_value_is_refused(
    client: TestClient, path: str, params: dict[str, str], words: str
) -> None:
    upload(client, PHOTO, "x")
    response = client.get(path, params=params)
    assert response.status_code == 422, response.text
    assert words in detail_of(response)


# Paths sent as raw bytes to the real server, so that uvicorn, not a test client, decodes them.
# (path, status of PUT, the id stored or None, status of GET and DELETE when nothing is stored)
ODD_PATHS = [
    ("/images/%00", 422, None, 422),
    ("/images/%0A", 422, None, 422),
    ("/images/" + "x" * 5000, 422, None, 422),
    ("/images/a%2Fb", 404, None, 404),  # %2F is a '/': no route has a slash inside an id
    ("/images/..%2F..%2Fetc%2Fpasswd", 404, None, 404),
    ("/images/%2E%2E", 422, None, 422),  # ".." is refused: clients drop it from URLs
    ("/images/%252F", 201, "%2F", 200),  # decoded once only
    ("/images/a%20b", 201, "a b", 200),
    ("/images/%F0%9F%90%88", 201, "\U0001f408", 200),
    ("/images/e%CC%81", 201, "\u00e9", 200),  # NFD: taken as its NFC form
    ("/images/%E2%80%AEtxt.exe", 422, None, 422),  # right-to-left override: looks like another id
    ("/images/%E2%80%8B", 422, None, 422),  # zero-width space
    ("/images/%EF%BB%BF", 422, None, 422),  # byte-order mark
    ("/images/%20", 422, None, 422),  # a space alone
    ("/images/%20a", 422, None, 422),  # looks like "a"
    ("/images/%FF", 422, None, 422),  # invalid UTF-8: decoded to U+FFFD, never stored as that
    ("/images/%FE", 422, None, 422),  # another: must not replace the one above
    ("/images/%ED%A0%80", 422, None, 422),  # a UTF-8 surrogate
    ("/images/%C0%AF", 422, None, 422),  # an overlong '/'
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("live")) as server:
        yield server


def raw_request(server: LiveServer, method: str, path: str, **request: Any) -> tuple[int, dict[str, Any]]:
    """Send `path` exactly as given; the status and the JSON body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        if "content" in request:
            connection.request(method, path, body=request["content"], headers=request["headers"])
        else:
            connection.request(method, path)
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if body else {}
    finally:
        connection.close()


def test_ids_that_look_the_same_are_the_same_id(live: LiveServer) -> None:
    """An id is taken in Unicode NFC: "e" and a combining accent is the id "\u00e9"."""
    assert raw_request(live, "PUT", "/images/e%CC%81", **multipart(file_part(PHOTO)))[0] == 201
    status, body = raw_request(live, "PUT", "/images/%C3%A9", **multipart(file_part(PHOTO)))
    assert (status, body["id"]) == (200, "\u00e9")  # replaced, not a second image
    assert raw_request(live, "GET", "/images/e%CC%81")[1]["id"] == "\u00e9"
    assert raw_request(live, "DELETE", "/images/%C3%A9")[0] == 204


@pytest.mark.parametrize(
    ("path", "put_status", "stored_id", "get_status"), ODD_PATHS, ids=lambda v: str(v)[:40]
)
def test_odd_path_id(
    live: LiveServer, path: str, put_status: int, stored_id: str | None, get_status: int
) -> None:
    for method, expected in (("PUT", put_status), ("GET", get_status)):
        request = multipart(file_part(PHOTO)) if method == "PUT" else {}
        status, body = raw_request(live, method, path, **request)
        assert status == expected, body
        if stored_id is None:
            assert "detail" in body
        else:
            assert body["id"] == stored_id
    delete_status, _ = raw_request(live, "DELETE", path)
    assert delete_status == (204 if stored_id is not None else get_status)
    assert raw_request(live, "GET", "/health") == (200, {"status": "ok", "images": 0})
