"""Idle, slow and too many clients against the real server: they are closed or refused, and the
others keep being served. The socket timeouts here only stop a hung run; no test asserts on time."""

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import LiveServer

from app.api.connections import REFUSAL_LOG_INTERVAL_S, RefusedAcceptLog

HUNG_S = 120.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("data")
    with LiveServer(
        data_dir, keep_alive_s="1", header_timeout_s="2", body_timeout_s="1", body_min_rate="100"
    ) as live:
        yield live


def connect(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=HUNG_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def dribble(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    """Send `data` a byte at a time, 5 a second, until the server closes or `stop` is set."""
    for byte in data:
        if stop.wait(0.2):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # closed by the server
            return


def test_a_connection_that_sends_nothing_is_closed(server: LiveServer) -> None:
    with connect(server) as sock:
        assert read_until_closed(sock) == b""
    assert httpx.get(server.url + "/health").status_code == 200


def test_a_request_head_sent_slowly_is_answered_408_and_closed(server: LiveServer) -> None:
    stop = threading.Event()
    with connect(server) as sock:
        head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 1000 + b"\r\n\r\n"
        sender = threading.Thread(target=dribble, args=(sock, head, stop))
        sender.start()
        answer = read_until_closed(sock)
        stop.set()
        sender.join()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer
    assert b'"the request head did not come within 2 s"' in answer


def test_a_body_at_a_few_bytes_a_second_is_answered_408_while_others_are_served(server: LiveServer) -> None:
    stop = threading.Event()
    body = b"--b\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n" + b"x" * 5000
    head = (
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: %d\r\n\r\n" % (len(body) + 8)
    )
    with connect(server) as sock:
        sock.sendall(head + body[:10])
        sender = threading.Thread(target=dribble, args=(sock, body[10:], stop))
        sender.start()
        assert httpx.get(server.url + "/health").status_code == 200  # meanwhile
        answer = read_until_closed(sock)
        stop.set()
        sender.join()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in answer
    assert b"slower than 100 bytes a second" in answer


def test_a_body_sent_at_once_and_a_kept_alive_connection_are_served(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url) as client:
        for _ in range(3):  # on one connection
            response = client.post("/search", files={"file": ("x", b"not an image")})
            assert response.status_code == 415


def test_connections_past_the_cap_are_answered_503_at_once(tmp_path: Path) -> None:
    with LiveServer(tmp_path, max_connections="4", keep_alive_s="600", header_timeout_s="600") as live:
        held = [connect(live) for _ in range(4)]
        started = time.monotonic()
        try:
            for _ in range(3):
                with connect(live) as extra:
                    answer = read_until_closed(extra)
                assert answer.startswith(b"HTTP/1.1 503 ")
                assert b"retry-after: 1" in answer
            elapsed = time.monotonic() - started
        finally:
            for sock in held:
                sock.close()
        assert httpx.get(live.url + "/health").status_code == 200
        lines = live.log.count("connections refused since the last such line")
        assert 1 <= lines <= 1 + elapsed // REFUSAL_LOG_INTERVAL_S
        assert "Traceback" not in live.log


def test_accepts_failing_for_want_of_files_are_logged_once_per_interval(tmp_path: Path) -> None:
    # A cap above the open-file limit, so that accepting fails (EMFILE) rather than being refused.
    with LiveServer(tmp_path, open_files=96, max_connections="1000", keep_alive_s="600") as live:
        started = time.monotonic()
        held = [connect(live) for _ in range(150)]  # the kernel's backlog takes those not accepted
        try:
            while "cannot accept connections" not in live.log:
                time.sleep(0.1)
            time.sleep(2)  # asyncio retries the accepts every second
            elapsed = time.monotonic() - started
        finally:
            for sock in held:
                sock.close()
        assert httpx.get(live.url + "/health", timeout=HUNG_S).status_code == 200
        lines = live.log.count("cannot accept connections")
        assert 1 <= lines <= 1 + elapsed // REFUSAL_LOG_INTERVAL_S
        assert "Too many open files" in live.log
        assert "Traceback" not in live.log


def test_other_loop_errors_still_reach_the_default_handler(caplog: pytest.LogCaptureFixture) -> None:
    handler = RefusedAcceptLog()
    loop = asyncio.new_event_loop()
    try:
        handler(loop, {"message": "something else broke", "exception": ValueError("boom")})
        refused = {"message": "socket.accept() out of system resource", "exception": OSError(24, "x")}
        for _ in range(3):
            handler(loop, refused)
    finally:
        loop.close()
    assert "something else broke" in caplog.text
    assert caplog.text.count("cannot accept connections") == 1
    assert "1 failed accepts since the last such line" in caplog.text
