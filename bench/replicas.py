"""Freshness across replicas: how soon an image added on one server process is found on another.

Two real servers, A and B (`python main.py`, each with its own data folder, as on two machines),
on one store: one SQLite file (B polls the log every DOPPEL_SYNC_INTERVAL_MS, default 100 ms) or
one PostgreSQL database (LISTEN/NOTIFY wakes B at each commit).

1. Lag: --adds images (small distinct PNGs, 96x72 random blocks) are added on A one at a time
   (POST /images), each after a random pause (--pause-ms, so that adds fall at any moment of B's
   poll). After each 201, B is searched for the image's hash (GET /search?hash=...&max_distance=0)
   in a tight loop until it is found; the lag is the time from A's 201 to B's first response that
   finds it. Reference in the same run, interleaved add for add: the same time with the search
   sent to A itself (read-your-writes: A answers 201 once its own index holds the image, so this
   is one search). Target: p99 under 1 s (HMA, the open-source peer, refreshes its index every
   30-65 s).
2. Add throughput: the same number of adds, from --clients concurrent clients, half on A and half
   on B (both replicas writing through the store's one write lock); and the rate of the sequential
   adds of part 1.
3. Store commit rate (the servers stopped): single-image add transactions through the store API,
   `with store.writing() as w: w.add([one])`, for --commit-seconds, from one process and from two
   at once: the rate the store's one write lock (the log head) allows.

Run: python bench/replicas.py [--store both|sqlite|postgres] [--adds 1000] [--postgres-url URL]
PostgreSQL runs create a database of their own on the server of --postgres-url and drop it after.
"""

import argparse
import io
import itertools
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from support import (
    DEFAULT_POSTGRES_URL,
    REPO,
    Server,
    doppel,
    fresh_postgres,
    percentile,
    run_threads,
    stop_on_sigterm,
)

sys.path.insert(0, str(REPO))

FIND_TIMEOUT_S = 10.0  # an image not found on a replica within this is counted as missed
IO_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 120.0
PROCESS_START_S = 5.0
TARGET_P99_S = 1.0
STORES = ("sqlite", "postgres")


def block_png(seed: int) -> bytes:
    """A 96x72 PNG of 8x6 random colour blocks, different for every seed."""
    blocks = np.random.default_rng(seed).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(blocks, "RGB").resize((96, 72), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Lags:
    """Seconds from A's 201 to the first response that finds the image, per searched replica."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {"B": [], "A": []})
    searches: dict[str, list[int]] = field(default_factory=lambda: {"B": [], "A": []})
    missed: dict[str, int] = field(default_factory=lambda: {"B": 0, "A": 0})
    add_seconds: list[float] = field(default_factory=list)


def found(client: httpx.Client, image_id: str, dhash: str) -> bool:
    response = client.get("/search", params={"hash": dhash, "max_distance": 0})
    response.raise_for_status()
    return any(match["id"] == image_id for match in response.json()["matches"])


def time_to_find(client: httpx.Client, image_id: str, dhash: str, since: float) -> tuple[float, int] | None:
    """Search until the image is found: (seconds since `since`, searches sent), or None in time."""
    for searches in itertools.count(1):
        hit = found(client, image_id, dhash)
        now = time.perf_counter()
        if hit:
            return now - since, searches
        if now - since > FIND_TIMEOUT_S:
            return None
    raise AssertionError("unreachable")


def measure_lag(a: httpx.Client, b: httpx.Client, adds: int, pause_s: float, label: str) -> Lags:
    """`adds` rounds of two adds on A: one searched on B, one on A, their order alternating, each
    after a random pause of up to `pause_s`."""
    lags = Lags()
    replicas = {"B": b, "A": a}
    pauses = np.random.default_rng(0).uniform(0, pause_s, size=2 * adds)
    for n in range(adds):
        order = ("B", "A") if n % 2 == 0 else ("A", "B")
        for target in order:
            time.sleep(pauses[2 * n + (target == "A")])
            image_id = f"{label}-{n}-{target}"
            data = block_png(2 * n + (target == "A"))
            start = time.perf_counter()
            response = a.post("/images", files={"file": ("image.png", data)}, data={"id": image_id})
            created = time.perf_counter()
            if response.status_code != 201:
                raise RuntimeError(f"POST /images on A answered {response.status_code}: {response.text}")
            lags.add_seconds.append(created - start)
            result = time_to_find(replicas[target], image_id, response.json()["hash"], created)
            if result is None:
                lags.missed[target] += 1
            else:
                lags.seconds[target].append(result[0])
                lags.searches[target].append(result[1])
    return lags


def concurrent_adds(urls: list[str], adds: int, clients: int, label: str) -> tuple[float, list[float]]:
    """`adds` adds from `clients` threads, spread over `urls`: (adds per second, latencies)."""
    counter = itertools.count()
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(url: str) -> None:
        with httpx.Client(base_url=url, timeout=IO_TIMEOUT_S) as http:
            while (n := next(counter)) < adds:
                data = block_png(1_000_000 + n)
                start = time.perf_counter()
                response = http.post(
                    "/images", files={"file": ("image.png", data)}, data={"id": f"{label}-{n}"}
                )
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if response.status_code != 201:
                        errors.append(f"{response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=client, args=(urls[n % len(urls)],)) for n in range(clients)]
    elapsed = run_threads(threads)
    if errors:
        raise RuntimeError(f"{len(errors)} adds failed, e.g. {errors[0]}")
    return adds / elapsed, latencies


def commit_loop(database_url: str, start_at: float, seconds: float, label: str) -> int:
    """Single-image add transactions through the store API from wall-clock time `start_at` for
    `seconds` (run in a process of its own); how many committed."""
    from app.config import Settings
    from app.imaging import HASHING_VERSION
    from app.models import NewImage
    from app.store import open_store

    store = open_store(Settings(database_url=database_url, data_dir=Path(tempfile.gettempdir())))
    rng = np.random.default_rng()
    try:
        time.sleep(max(0.0, start_at - time.time()))
        deadline = time.perf_counter() + seconds
        commits = 0
        while time.perf_counter() < deadline and commits < 1_000_000:
            dhash = int(rng.integers(0, 2**63))
            with store.writing() as write:
                write.add(
                    [
                        NewImage(
                            id=f"{label}-{commits}",
                            dhash=dhash,
                            width=None,
                            height=None,
                            hashing_version=HASHING_VERSION,
                        )
                    ]
                )
            commits += 1
        return commits
    finally:
        store.close()


def commit_rate(database_url: str, seconds: float, processes: int, label: str) -> float:
    """Commits per second of `processes` processes running commit_loop over the same span."""
    start_at = time.time() + PROCESS_START_S  # time for the processes to start and import
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        futures = [
            pool.submit(commit_loop, database_url, start_at, seconds, f"{label}-{p}")
            for p in range(processes)
        ]
        return sum(future.result() for future in futures) / seconds


def report_lags(lags: Lags) -> None:
    print(f"   {'A 201 -> found on':<22}{'n':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}", end="")
    print(f"{'searches p50/max':>18}{'missed':>8}")
    for target, name in (("B", "B (the other replica)"), ("A", "A (read-your-writes)")):
        values = lags.seconds[target]
        if not values:
            print(f"   {name:<22}{0:>6}  nothing found ({lags.missed[target]} missed)")
            continue
        row = [percentile(values, share) * 1e3 for share in (0.5, 0.9, 0.99, 1.0)]
        searches = lags.searches[target]
        print(f"   {name:<22}{len(values):>6}" + "".join(f"{v:>9.1f}" for v in row), end="")
        print(f"{statistics.median(searches):>12.0f}/{max(searches):<5}{lags.missed[target]:>8}")
    b, a = lags.seconds["B"], lags.seconds["A"]
    if a and b:
        print(f"   B/A at p50: {percentile(b, 0.5) / percentile(a, 0.5):.1f}x", end="")
        print(f"; B - A at p50: {(percentile(b, 0.5) - percentile(a, 0.5)) * 1e3:.1f} ms")
    p99 = percentile(b, 0.99) if b else float("inf")
    met = p99 < TARGET_P99_S and lags.missed["B"] == 0
    print(f"   target p99 < {TARGET_P99_S:.0f} s on B: {'met' if met else 'NOT met'} ({p99 * 1e3:.0f} ms)")


def run_store(kind: str, args: argparse.Namespace, work: Path) -> None:
    with ExitStack() as stack:
        if kind == "postgres":
            url = stack.enter_context(fresh_postgres(args.postgres_url))
            where = "one PostgreSQL database (a fresh one on the server), LISTEN/NOTIFY"
        else:
            url = f"sqlite:///{work / 'store' / 'doppel.sqlite3'}"
            where = f"one SQLite file, polled every {args.sync_interval_ms} ms"
        settings = {"sync_interval_ms": str(args.sync_interval_ms)}
        servers: list[Server] = []
        for name in ("a", "b"):
            server = stack.enter_context(doppel(work / kind / name, database_url=url, **settings))
            servers.append(server)
        for server in servers:
            server.wait_ready("/health/ready", READY_TIMEOUT_S)
        a_server, b_server = servers
        print(f"\n{kind}: A and B on {where}")
        with (
            httpx.Client(base_url=a_server.url, timeout=IO_TIMEOUT_S) as a,
            httpx.Client(base_url=b_server.url, timeout=IO_TIMEOUT_S) as b,
        ):
            for n in range(5):  # warm-up: connections, first requests
                data = {"id": f"warm-{n}"}
                a.post("/images", files={"file": ("w.png", block_png(2_000_000 + n))}, data=data)
                found(b, f"warm-{n}", "0" * 16)
            lags = measure_lag(a, b, args.adds, args.pause_ms / 1000, "lag")
        print(f"1. {args.adds} rounds of two adds on A (one searched on B, one on A), one at a time", end="")
        print(f" after a random pause of 0-{args.pause_ms} ms")
        report_lags(lags)
        sequential = len(lags.add_seconds) / sum(lags.add_seconds)
        print(f"2. adds: one client on A, one at a time: {sequential:.0f} adds/s", end="")
        print(f" (POST /images p50 {percentile(lags.add_seconds, 0.5) * 1e3:.1f} ms)")
        urls = [a_server.url, b_server.url]
        rate, latencies = concurrent_adds(urls, args.adds, args.clients, "many")
        p50, p99 = percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3
        print(f"   {args.adds} adds from {args.clients} clients on A and B: {rate:.0f} adds/s", end="")
        print(f" (p50 {p50:.1f} ms, p99 {p99:.1f} ms)")
        for server in servers:
            server.terminate()
        if args.commit_seconds > 0:
            one = commit_rate(url, args.commit_seconds, 1, "one")
            two = commit_rate(url, args.commit_seconds, 2, "two")
            print(
                f"3. store commits, single-image add transactions for {args.commit_seconds:.0f} s: ", end=""
            )
            print(f"{one:.0f}/s from one process, {two:.0f}/s from two at once")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", choices=("both", *STORES), default="both", help="default: both, in turn")
    parser.add_argument(
        "--adds", type=int, default=1000, help="rounds of part 1, adds of part 2 (default 1000)"
    )
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients of part 2 (default 4)")
    parser.add_argument(
        "--commit-seconds", type=float, default=5.0, help="length of each part-3 loop (default 5; 0: skip)"
    )
    parser.add_argument(
        "--sync-interval-ms", type=int, default=100, help="DOPPEL_SYNC_INTERVAL_MS of both (default 100)"
    )
    parser.add_argument(
        "--pause-ms",
        type=int,
        default=100,
        help="random pause (0 to this) before each add of part 1, so that adds fall at random moments of "
        "B's poll; without it each add follows B's last poll and waits a whole interval (default 100)",
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help=f"a PostgreSQL server to create the database on (default {DEFAULT_POSTGRES_URL})",
    )
    args = parser.parse_args()
    stop_on_sigterm()
    kinds = STORES if args.store == "both" else (args.store,)
    with tempfile.TemporaryDirectory(prefix="doppel-replicas-") as work:
        for kind in kinds:
            run_store(kind, args, Path(work))


if __name__ == "__main__":
    main()
