"""Idle, slow and too many clients against the real server (issue 17), against the code at a
reference commit run the same way in the same run.

    python bench/slow_clients.py --reference f897d9c

For each server, with the default settings: how many of 100 connections that send nothing, 20
that send a request head at 1 byte a second and 20 that send a body at 1 byte a second it still
holds after 20 s, and how long /health takes meanwhile; then, with the open-file limit lowered to
256, 1,000 connections at once: what it logs over 5 s, whether /health answers during the flood
(5 s timeout) and after it. Linux only (reads /proc).
"""

import argparse
import select
import socket
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from support import REPO, Server, checkout, doppel_of, stop_on_sigterm

WINDOW_S = 20.0
FLOOD = 1000
OPEN_FILES = 256


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (after any answer it sent)."""
    sock.setblocking(False)
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
        return False
    except OSError:  # reset
        return True


def dribble(sock: socket.socket, data: bytes, stop: threading.Event) -> None:
    for byte in data:
        if stop.wait(1.0):
            return
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            return


def health_seconds(server: Server, timeout_s: float = 5.0) -> str:
    started = time.perf_counter()
    try:
        status = httpx.get(server.url + "/health", timeout=timeout_s).status_code
    except httpx.TransportError as exc:
        return f"no answer ({type(exc).__name__})"
    return f"{status} in {(time.perf_counter() - started) * 1000:.0f} ms"


def slow_clients(label: str, tree: Path) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100 + b"\r\n\r\n"
    body = b"--b\r\nContent-Disposition: form-data; name=file; filename=x\r\n\r\n" + b"x" * 100
    post = b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
    post += b"Content-Length: %d\r\n\r\n" % (len(body) + 8)
    stop = threading.Event()
    with tempfile.TemporaryDirectory() as data_dir, doppel_of(tree, Path(data_dir), {}) as server:
        server.wait_ready()
        idle = [connect(server) for _ in range(100)]
        heads = [connect(server) for _ in range(20)]
        bodies = [connect(server) for _ in range(20)]
        for sock in bodies:
            sock.sendall(post)
        senders = [threading.Thread(target=dribble, args=(s, head, stop)) for s in heads]
        senders += [threading.Thread(target=dribble, args=(s, body, stop)) for s in bodies]
        for sender in senders:
            sender.start()
        time.sleep(WINDOW_S / 2)
        health = health_seconds(server)
        time.sleep(WINDOW_S / 2)
        held = [sum(not closed_by_server(s) for s in group) for group in (idle, heads, bodies)]
        stop.set()
        for sender in senders:
            sender.join()
        for sock in idle + heads + bodies:
            sock.close()
    print(f"| {label} | {held[0]} of 100 | {held[1]} of 20 | {held[2]} of 20 | {health} |", flush=True)


def flood(label: str, tree: Path) -> None:
    with (
        tempfile.TemporaryDirectory() as data_dir,
        doppel_of(tree, Path(data_dir), {}, open_files=OPEN_FILES, log_level="info") as server,
    ):
        server.wait_ready()
        logged = server.log
        started = time.perf_counter()
        held = []
        for _ in range(FLOOD):
            try:
                held.append(connect(server))
            except OSError:
                break
        time.sleep(2)
        during = health_seconds(server)
        time.sleep(3)
        written = server.log.removeprefix(logged)
        rate = len(written) / (time.perf_counter() - started)
        for sock in held:
            sock.close()
        time.sleep(2)
        after = health_seconds(server)
        tracebacks = server.log.count("Traceback")
    print(
        f"| {label} | {len(held)} | {written.count(chr(10)):,} lines, {rate:,.0f} B/s | {tracebacks:,} "
        f"| {during} | {after} |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", metavar="REF", help="also run the code at this commit, as it was")
    args = parser.parse_args()
    stop_on_sigterm()
    with ExitStack() as stack:
        trees = [("this", REPO)]
        if args.reference:
            trees.insert(0, (args.reference, stack.enter_context(checkout(args.reference))))
        print(f"held after {WINDOW_S:.0f} s; /health at {WINDOW_S / 2:.0f} s\n")
        print("| code | idle | head at 1 B/s | body at 1 B/s | /health meanwhile |\n|---|---|---|---|---|")
        for label, tree in trees:
            slow_clients(label, tree)
        print(f"\n{FLOOD} connections, open-file limit {OPEN_FILES}\n")
        print("| code | connected | log | tracebacks | /health during | /health after |")
        print("|---|---|---|---|---|---|")
        for label, tree in trees:
            flood(label, tree)


if __name__ == "__main__":
    main()
