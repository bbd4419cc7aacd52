"""GET /duplicates on a large store, and what keeping the duplicate pairs costs a start.

A SQLite store is filled through the store API (not over HTTP) with --size hash-only rows: random
dHashes, of which --planted are near copies (1-3 copies each, 0-8 bits from an original), so that
there are groups to find. Then:

 1. --repeats times, taking turns: a start with no snapshot without the pair work
    (DOPPEL_DUPLICATE_GROUPS=false, the reference) and one with it, each until /health/ready
    (the pairs are built in the background: the start itself does not wait for them);
 2. a start with the pair work and no snapshot, kept until GET /duplicates says `complete` (the
    pairs rebuilt: one index search per stored image), then its first page --pages times (the
    median), at the default parameters; then a clean stop (SIGTERM: index and pairs saved);
 3. --repeats times, taking turns: a start from the index snapshot without the pair work, and one
    from the snapshots with it, until ready; the latter also until complete, and its first pages.

Every server logs at `info`, the same for all (the log level alone moves a start's time).

Printed: seconds (median, min-max), the ratio of the starts with the pair work to those without,
resident memory, the snapshots' sizes, and the number of groups (with the planted copies, at least
the planted originals that have a copy, plus the pairs random hashes make by chance).

Run: python bench/duplicates.py [--size 1000000] [--planted 10000] [--pages 5] [--repeats 3]
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from support import REPO, doppel, spread, stop_on_sigterm

sys.path.insert(0, str(REPO))
from app.models import NewImage  # noqa: E402
from app.store import SQLiteImageStore  # noqa: E402

FILL_BATCH = 100_000
COMPLETE_TIMEOUT_S = 4 * 3600.0
READY_TIMEOUT_S = 600.0


def fill(path: Path, size: int, planted: int, rng: np.random.Generator) -> int:
    """Fill the store; the number of planted originals (each with 1-3 near copies)."""
    hashes = rng.integers(0, 2**64, size=size, dtype=np.uint64)
    copies = rng.integers(1, 4, size=planted)
    at = size - int(copies.sum())
    originals = rng.choice(at, size=planted, replace=False)
    for original, count in zip(originals.tolist(), copies.tolist(), strict=True):
        for _ in range(count):
            flips = rng.choice(64, size=int(rng.integers(0, 9)), replace=False)
            hashes[at] = hashes[original] ^ np.uint64(sum(1 << int(bit) for bit in flips))
            at += 1
    rng.shuffle(hashes)
    store = SQLiteImageStore(path)
    try:
        for start in range(0, size, FILL_BATCH):
            chunk = hashes[start : start + FILL_BATCH].tolist()
            with store.writing() as write:
                write.add(
                    [
                        NewImage(
                            id=f"img-{start + n:010d}", dhash=h, width=None, height=None, hashing_version=1
                        )
                        for n, h in enumerate(chunk)
                    ]
                )
    finally:
        store.close()
    return planted


def first_page(url: str) -> tuple[float, dict[str, object]]:
    start = time.perf_counter()
    response = httpx.get(url + "/duplicates", timeout=600)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    page: dict[str, object] = response.json()
    return elapsed, page


def wait_complete(url: str) -> float:
    """Seconds until GET /duplicates says the pairs are complete (polled every second)."""
    start = time.perf_counter()
    while time.perf_counter() - start < COMPLETE_TIMEOUT_S:
        page = httpx.get(url + "/duplicates", params={"limit": 1}, timeout=600).json()
        if page["complete"]:
            return time.perf_counter() - start
        time.sleep(1.0)
    raise RuntimeError("the pairs were not complete in time")


def clear_snapshots(data: Path) -> None:
    for path in (data / "snapshots").glob("*"):
        path.unlink()


def ready_seconds(data: Path, **settings: str) -> float:
    """Seconds until a server on `data` is ready; it is then stopped at once (SIGTERM)."""
    with doppel(data, log_level="info", **settings) as server:
        seconds = server.wait_ready("/health/ready", READY_TIMEOUT_S)
        server.terminate()
    return seconds


def pages_seconds(url: str, count: int) -> tuple[list[float], object]:
    timed = [first_page(url) for _ in range(count)]
    return [elapsed for elapsed, _ in timed], timed[0][1]["total"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="stored hashes (default 1000000)")
    parser.add_argument(
        "--planted", type=int, default=10_000, help="originals given near copies (default 10000)"
    )
    parser.add_argument("--pages", type=int, default=5, help="first pages timed per start (default 5)")
    parser.add_argument("--repeats", type=int, default=3, help="starts of each kind (default 3)")
    args = parser.parse_args()
    stop_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="doppel-duplicates-"))
    data = work / "data"
    try:
        data.mkdir()
        started = time.perf_counter()
        fill(data / "doppel.sqlite3", args.size, args.planted, np.random.default_rng(13))
        print(f"{args.size:,} hashes ({args.planted:,} planted originals with copies), filled in ", end="")
        print(f"{time.perf_counter() - started:.0f} s")

        rebuilt: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for pairs in (False, True):
                clear_snapshots(data)
                rebuilt[pairs].append(ready_seconds(data, duplicate_groups=str(pairs).lower()))
        report("1. no snapshot (index rebuilt), until ready", rebuilt)

        clear_snapshots(data)
        with doppel(data, log_level="info") as server:
            server.wait_ready("/health/ready", READY_TIMEOUT_S)
            during, page = first_page(server.url)
            complete = wait_complete(server.url)
            rss = server.rss_bytes() / 2**20
            seconds, total = pages_seconds(server.url, args.pages)
            stop = server.terminate()
        print(f"2. pairs rebuilt {complete:.0f} s after ready; VmRSS {rss:.0f} MiB; ", end="")
        print(f"first page while building ({page['progress']:.0%} done) {during:.3f} s")
        print(f"   first page: {spread(seconds, digits=3)}, {total:,} groups")
        sizes = {path.name.split("-")[0]: path.stat().st_size for path in (data / "snapshots").glob("*")}
        listed = ", ".join(f"{kind} {size / 2**20:.1f} MiB" for kind, size in sorted(sizes.items()))
        print(f"   clean stop {stop:.2f} s; snapshots: {listed}")

        loaded: dict[bool, list[float]] = {False: [], True: []}
        completes: list[float] = []
        firsts: list[float] = []
        for _ in range(args.repeats):
            loaded[False].append(ready_seconds(data, duplicate_groups="false"))
            with doppel(data, log_level="info") as server:
                loaded[True].append(server.wait_ready("/health/ready", READY_TIMEOUT_S))
                completes.append(wait_complete(server.url))
                seconds, total = pages_seconds(server.url, args.pages)
                firsts += seconds
                if "duplicate pairs loaded" not in server.log:
                    raise RuntimeError("the pairs snapshot was not loaded")
                server.terminate()
        report("3. from the snapshots, until ready", loaded)
        print(
            f"   pairs complete {spread(completes)} after ready; first page {spread(firsts, digits=3)}, ",
            end="",
        )
        print(f"{total:,} groups")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(title: str, seconds: dict[bool, list[float]]) -> None:
    ratio = statistics.median(seconds[True]) / statistics.median(seconds[False])
    print(f"{title}: without the pair work {spread(seconds[False])}, ", end="")
    print(f"with it {spread(seconds[True])} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
