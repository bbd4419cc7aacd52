"""Load benchmark: the real server (`python main.py`) on 127.0.0.1, mixed adds and searches.

    python bench/load.py                 # 10 s warm-up, then 60 s from 16 clients
    python bench/load.py --duration 10   # a shorter run
    python bench/load.py --database-url postgresql://USER@HOST:PORT/DB   # on PostgreSQL

Starts its own server on a fresh data folder and a port the OS picks, sends only to loopback, and
stops by itself: each phase ends at its deadline or after --max-requests. Reports errors (must be
0), latency percentiles, requests/s and the server's resident memory after the warm-up and after
the run (must stay within 10%). Exits 1 when either check fails. Linux only (reads /proc).

The store is SQLite in the data folder, or with --database-url, a PostgreSQL database created on that
server for the run and dropped after (the server's memory is then Doppel's alone, not PostgreSQL's).
"""

import argparse
import http.client
import itertools
import json
import random
import secrets
import sys
import tempfile
import threading
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # helpers imports app
# helpers imports the test client, which warns about its httpx dependency.
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

from helpers import encode, make_photo  # noqa: E402
from live_server import LiveServer, rss_bytes  # noqa: E402
from support import fresh_postgres, is_postgres, stop_on_sigterm  # noqa: E402

BOUNDARY = "doppel-bench"
POOL = 64  # distinct photos; adds cycle through them under new ids
MAX_RSS_GROWTH = 0.10


@dataclass
class Tally:
    """Latencies (seconds) per kind of request, and the failures."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies.setdefault(kind, []).append(seconds)
            if error is not None:
                self.errors.append(f"{kind}: {error}")

    def count(self) -> int:
        return sum(len(values) for values in self.latencies.values())


def multipart(fields: dict[str, bytes]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"'.encode()
        + (b'; filename="f"' if name == "file" else b"")
        + b"\r\n\r\n"
        + value
        + b"\r\n"
        for name, value in fields.items()
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


class Client:
    """One keep-alive connection sending a random mix: 25% adds, 50% search by upload,
    25% search by hash."""

    def __init__(self, port: int, photos: list[bytes], hashes: list[str], seed: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.photos, self.hashes = photos, hashes
        self.random = random.Random(seed)
        self.prefix = secrets.token_hex(4)
        self.sent = itertools.count()

    def one(self, tally: Tally) -> None:
        roll = self.random.random()
        photo = self.random.choice(self.photos)
        if roll < 0.25:
            body = multipart({"file": photo, "id": f"{self.prefix}-{next(self.sent)}".encode()})
            self._send(tally, "add", "POST", "/images", body, 201)
        elif roll < 0.75:
            self._send(tally, "search by upload", "POST", "/search?limit=10", multipart({"file": photo}), 200)
        else:
            self._send(
                tally, "search by hash", "GET", f"/search?hash={self.random.choice(self.hashes)}", None, 200
            )

    def _send(
        self, tally: Tally, kind: str, method: str, path: str, body: bytes | None, expected: int
    ) -> None:
        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"} if body is not None else {}
        start = time.perf_counter()
        error = None
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            content = response.read()
            if response.status != expected:
                error = f"{response.status} {content[:200]!r}"
        except (OSError, http.client.HTTPException) as exc:
            error = repr(exc)
            self.connection.close()  # reconnects on the next request
        tally.record(kind, time.perf_counter() - start, error)


def run_phase(clients: list[Client], seconds: float, max_requests: int) -> tuple[Tally, float]:
    """All clients send until the deadline or until max_requests were sent; (tally, elapsed s)."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    budget = itertools.count()

    def loop(client: Client) -> None:
        while time.monotonic() < deadline and next(budget) < max_requests:
            client.one(tally)

    threads = [threading.Thread(target=loop, args=(client,)) for client in clients]
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.monotonic() - start


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(tally: Tally, elapsed: float) -> None:
    every = [v for values in tally.latencies.values() for v in values]
    print(f"{'requests':<18}{'count':>8}{'p50 ms':>10}{'p99 ms':>10}")
    for kind, values in sorted(tally.latencies.items()) + [("all", every)]:
        p50, p99 = percentile(values, 0.5) * 1e3, percentile(values, 0.99) * 1e3
        print(f"{kind:<18}{len(values):>8}{p50:>10.1f}{p99:>10.1f}")
    print(f"throughput        {len(every) / elapsed:.0f} requests/s over {elapsed:.1f} s")
    print(f"errors            {len(tally.errors)}")
    for error in tally.errors[:10]:
        print(f"  {error}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python bench/load.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured load (default 60)")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds of the same load first (default 10)"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument(
        "--max-requests", type=int, default=1_000_000, help="cap per phase (default 1,000,000)"
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (postgresql://...) to create the run's database on (default: SQLite)",
    )
    args = parser.parse_args(argv)
    if args.database_url is not None and not is_postgres(args.database_url):
        parser.error("--database-url takes a postgresql:// URL (SQLite is the default)")
    stop_on_sigterm()

    photos = [encode(make_photo(n, (320, 240)), "JPEG", quality=85) for n in range(POOL)]
    hashes = [f"{random.Random(n).getrandbits(64):016x}" for n in range(POOL)]
    with ExitStack() as stack:
        data = stack.enter_context(tempfile.TemporaryDirectory(prefix="doppel-bench-"))
        if args.database_url is None:
            server = stack.enter_context(LiveServer(Path(data)))
        else:
            url = stack.enter_context(fresh_postgres(args.database_url))
            server = stack.enter_context(LiveServer(Path(data), database_url=url))
        clients = [Client(server.port, photos, hashes, seed) for seed in range(args.clients)]
        store = "PostgreSQL" if args.database_url else "SQLite"
        print(f"server pid {server.pid} on {server.url} ({store}); ", end="")
        print(f"{args.clients} clients; warm-up {args.warmup:.0f} s")
        warm, _ = run_phase(clients, args.warmup, args.max_requests)
        rss_warm = rss_bytes(server.pid)
        print(f"warm-up: {warm.count()} requests, {len(warm.errors)} errors; measuring {args.duration:.0f} s")
        tally, elapsed = run_phase(clients, args.duration, args.max_requests)
        rss_end = rss_bytes(server.pid)
        images = http_get_count(server.port)
    report(tally, elapsed)
    growth = rss_end / rss_warm - 1
    warm_mib, end_mib = rss_warm / 2**20, rss_end / 2**20
    print(f"server memory     {warm_mib:.0f} MiB after warm-up, {end_mib:.0f} MiB after the run", end="")
    print(f" ({growth:+.1%})")
    print(f"images stored     {images}")
    failed = bool(warm.errors or tally.errors) or growth > MAX_RSS_GROWTH
    print("FAILED" if failed else "OK: no errors, memory within 10%")
    return 1 if failed else 0


def http_get_count(port: int) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", "/health")
        return int(json.loads(connection.getresponse().read())["images"])
    finally:
        connection.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
