"""The real server (`python main.py`) in a subprocess: crashes lose nothing acknowledged, SIGTERM
drains, bodies over the limit are cut off while they stream, logs keep secrets out.

Timeouts only stop a hung run; nothing here asserts on time.
"""

import json
import os
import select
import signal
import socket
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest
from helpers import as_stored, encode, make_photo
from live_server import REPO, LiveServer

from app.api.uploads import FORM_OVERHEAD_BYTES
from app.config import MIB

DATABASE = "doppel.sqlite3"
BOUNDARY = b"doppel-test-boundary"
IO_TIMEOUT_S = 60.0


def photo(n: int) -> bytes:
    return encode(make_photo(n, (96, 72)), "JPEG", quality=90)


def form_head(image_id: str) -> bytes:
    """The multipart body up to the file's bytes (an `id` field, then the file part's headers)."""
    return (
        b"--"
        + BOUNDARY
        + b'\r\nContent-Disposition: form-data; name="id"\r\n\r\n'
        + image_id.encode()
        + b"\r\n"
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="f"\r\n\r\n'
    )


FORM_TAIL = b"\r\n--" + BOUNDARY + b"--\r\n"


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: multipart/form-data; boundary={BOUNDARY.decode()}",
    ]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and raw bytes of the whole response (the server closes or the body is complete)."""
    received = b""
    while b"\r\n\r\n" not in received or not _complete(received):
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return int(received.split(b" ", 2)[1]), received


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return False


def json_body(response: bytes) -> dict[str, object]:
    body: dict[str, object] = json.loads(response.partition(b"\r\n\r\n")[2])
    return body


# --- SIGKILL ---------------------------------------------------------------------------------

THREADS = 4
KILL_AFTER = 40  # acknowledged uploads before the kill
MAX_PER_THREAD = 500


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_sigkill_loses_no_acknowledged_upload(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    on_postgres = {"database_url": request.getfixturevalue("postgres_url")} if store == "postgres" else {}
    sent: dict[str, bytes] = {}  # every id an upload was started for, and its bytes
    acknowledged: dict[str, dict[str, object]] = {}  # id -> the 201 body
    unexpected: list[str] = []
    lock = threading.Lock()
    enough = threading.Event()

    with LiveServer(tmp_path, **on_postgres) as server:

        def uploader(thread: int) -> None:
            with httpx.Client(base_url=server.url, timeout=IO_TIMEOUT_S) as http:
                for n in range(MAX_PER_THREAD):
                    image_id, data = f"t{thread}-{n}", photo(thread * MAX_PER_THREAD + n)
                    with lock:
                        sent[image_id] = data
                    metadata = json.dumps({"n": n, "thread": thread})
                    try:
                        response = http.post(
                            "/images",
                            files={"file": ("f", data)},
                            data={"id": image_id, "metadata": metadata},
                        )
                    except httpx.TransportError:
                        return  # the server is gone
                    with lock:
                        if response.status_code != 201:
                            unexpected.append(response.text)
                        acknowledged[image_id] = response.json()
                        if len(acknowledged) >= KILL_AFTER:
                            enough.set()

        threads = [threading.Thread(target=uploader, args=(t,)) for t in range(THREADS)]
        for worker in threads:
            worker.start()
        enough.wait(IO_TIMEOUT_S * 5)
        assert server.signal(signal.SIGKILL) == -signal.SIGKILL
        for worker in threads:
            worker.join(IO_TIMEOUT_S)

    assert unexpected == []
    assert len(acknowledged) >= KILL_AFTER
    if store == "sqlite":  # a crash leaves the write-ahead log behind (the clean stop below leaves none)
        assert (tmp_path / f"{DATABASE}-wal").stat().st_size > 0

    with (
        LiveServer(tmp_path, **on_postgres) as server,
        httpx.Client(base_url=server.url, timeout=IO_TIMEOUT_S) as http,
    ):
        stored = {
            record["id"]: record for record in http.get("/images", params={"limit": 1000}).json()["items"]
        }
        assert http.get("/health").json()["images"] == len(stored)
        # every acknowledged image is there, whole, and found by its picture
        for image_id, created in acknowledged.items():
            assert stored[image_id] == as_stored(created)
            matches = http.post("/search", files={"file": ("f", sent[image_id])}).json()["matches"]
            assert (image_id, 0) in [(m["id"], m["distance"]) for m in matches]
        # any other record is one whose 201 was lost with the server, and it is complete too
        assert set(stored) <= set(sent)
        for image_id, record in stored.items():
            thread, n = (int(part) for part in image_id[1:].split("-"))
            assert record["metadata"] == {"n": n, "thread": thread}
            assert (record["width"], record["height"]) == (96, 72)
            assert len(record["hash"]) == 16
        server.signal(signal.SIGTERM)
    if store == "sqlite":
        db = sqlite3.connect(tmp_path / DATABASE)
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            db.close()


# --- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_finishes_the_request_in_flight_and_closes_the_store(tmp_path: Path) -> None:
    data = photo(1)
    body = form_head("in-flight") + data + FORM_TAIL
    server = LiveServer(tmp_path)
    with server, socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT_S) as sock:
        headers = {"Content-Length": str(len(body)), "Expect": "100-continue"}
        sock.sendall(request_head("/images", headers) + body[:100])
        # uvicorn answers "100 Continue" when the app first reads the body: the request is in the app.
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 ")
        server.process.send_signal(signal.SIGTERM)
        sock.sendall(body[100:])
        status, response = read_response(sock)
        assert status == 201, response
        assert json_body(response)["id"] == "in-flight"
        assert server.process.wait(IO_TIMEOUT_S) == -signal.SIGTERM  # uvicorn re-raises the signal it handled
    assert "Application shutdown complete" in server.log
    # The store was closed: SQLite checkpoints the write-ahead log into the database and removes it.
    assert not (tmp_path / f"{DATABASE}-wal").exists()
    with LiveServer(tmp_path) as again:
        assert httpx.get(f"{again.url}/images/in-flight", timeout=IO_TIMEOUT_S).status_code == 200


# --- the start log -----------------------------------------------------------------------------


def test_the_start_log_names_the_store_by_its_absolute_path_and_counts_its_images(tmp_path: Path) -> None:
    # A path relative to the folder the server starts in (the repository) is logged resolved.
    relative = os.path.relpath(tmp_path / "store.sqlite3", REPO)
    assert not Path(relative).is_absolute()
    opened = f"store {tmp_path.resolve() / 'store.sqlite3'} opened: "
    with LiveServer(tmp_path, database_url=f"sqlite:///{relative}") as server:
        assert f"{opened}0 images" in server.log
        for n in (1, 2):
            response = httpx.post(f"{server.url}/images", files={"file": photo(n)}, timeout=IO_TIMEOUT_S)
            assert response.status_code == 201
    with LiveServer(tmp_path, database_url=f"sqlite:///{relative}") as again:
        assert f"{opened}2 images" in again.log


# --- upload limits while streaming ------------------------------------------------------------

LIMIT = 1 * MIB
CHUNK = 64 * 1024
PLANNED = 64 * MIB  # the body the client would send if nobody stopped it


def test_chunked_upload_over_the_limit_is_refused_while_it_streams(tmp_path: Path) -> None:
    with LiveServer(tmp_path, max_upload_bytes=str(LIMIT)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT_S) as sock:
            sock.sendall(request_head("/images", {"Transfer-Encoding": "chunked"}))
            sent, answered = 0, False
            payload = form_head("too-big") + bytes(CHUNK - len(form_head("too-big")))
            while sent < PLANNED and not answered:
                try:
                    sock.sendall(b"%x\r\n" % len(payload) + payload + b"\r\n")
                except OSError:  # the server answered and closed while this chunk was on its way
                    break
                sent += len(payload)
                payload = bytes(CHUNK)
                # Pace the client a little so the answer is read before the server closes the socket.
                answered = bool(select.select([sock], [], [], 0.01)[0])
            if not answered and sent >= PLANNED:
                sock.sendall(b"0\r\n\r\n")  # the end of the body: a server that read it all answers now
            status, response = read_response(sock)
        assert status == 413, response
        detail = json_body(response)["detail"]
        assert isinstance(detail, str) and "over the limit" in detail
        # The answer came soon after the limit (plus the form's allowance) was passed, not at the end.
        assert LIMIT + FORM_OVERHEAD_BYTES < sent < PLANNED // 8, f"answered after {sent} bytes"
        assert httpx.get(f"{server.url}/health", timeout=IO_TIMEOUT_S).json() == {"status": "ok", "images": 0}


def test_declared_length_over_the_limit_is_refused_before_the_body(tmp_path: Path) -> None:
    with LiveServer(tmp_path, max_upload_bytes=str(LIMIT)) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT_S) as sock:
            sock.sendall(request_head("/images", {"Content-Length": str(PLANNED)}))
            status, response = read_response(sock)  # not one byte of the body was sent
        assert status == 413, response


# --- logs ------------------------------------------------------------------------------------

KEY = "log-test-key-9f8e7d6c5b4a3210"
WRONG_KEY = "not-the-key-0123456789abcdef"
MARKER = "DOPPEL-PIXEL-MARKER-5a1f"


@pytest.mark.parametrize("log_level", ["info", "trace"])
def test_logs_hold_neither_the_key_nor_image_bytes(tmp_path: Path, log_level: str) -> None:
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("comment", MARKER)
    marked_png = encode(make_photo(1, (64, 48)), "PNG", pnginfo=text)
    with LiveServer(tmp_path, api_key=KEY, log_level=log_level) as server:
        with httpx.Client(base_url=server.url, timeout=IO_TIMEOUT_S) as http:
            auth = {"Authorization": f"Bearer {KEY}"}
            assert (
                http.post(
                    "/images", files={"file": ("f", marked_png)}, data={"id": "m"}, headers=auth
                ).status_code
                == 201
            )
            not_image = {"file": ("f", f"{MARKER} not an image".encode())}
            assert http.post("/images", files=not_image, headers={"X-API-Key": KEY}).status_code == 415
            assert (
                http.post("/search", files={"file": ("f", marked_png[:200])}, headers=auth).status_code == 422
            )
            assert http.get("/images", headers={"Authorization": f"Bearer {WRONG_KEY}"}).status_code == 401
            assert http.get("/images", headers={"X-API-Key": WRONG_KEY}).status_code == 401
        server.signal(signal.SIGTERM)
    log = server.log
    assert "POST /images" in log and " 401" in log  # requests are logged, so their absence below counts
    for secret in (KEY, WRONG_KEY, MARKER, "IHDR", "\\x89PNG"):
        assert secret not in log
