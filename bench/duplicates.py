"""GET /duplicates on a large store, and what keeping the duplicate pairs costs a start.

A SQLite store is filled through the store API (not over HTTP) with --size hash-only rows: random
dHashes, of which --planted are near copies (1-3 copies each, 0-8 bits from an original), so that
there are groups to find. Then, one after the other:

 a. start without the pair work (DOPPEL_DUPLICATE_GROUPS=false), no snapshot: the reference;
 b. start with it, no snapshot: until /health/ready, then until GET /duplicates says `complete`
    (the pairs rebuilt in the background: one index search per stored image); its first page,
    --pages times (median), at the default parameters;
 c. stop it (SIGTERM: the index and the pairs are saved);
 d. start without the pair work from the index snapshot (the reference for e);
 e. start with it from the snapshots: until ready, until complete, and the first page again.

Printed: seconds, each start's ratio to its reference, resident memory, the snapshots' sizes and
the number of groups (with the planted copies, at least the planted originals that have a copy).

Run: python bench/duplicates.py [--size 1000000] [--planted 10000] [--pages 5]
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
from support import REPO, doppel, stop_on_sigterm

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
                        NewImage(id=f"img-{start + n:010d}", dhash=h, width=None, height=None)
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000, help="stored hashes (default 1000000)")
    parser.add_argument(
        "--planted", type=int, default=10_000, help="originals given near copies (default 10000)"
    )
    parser.add_argument("--pages", type=int, default=5, help="first pages timed per start (default 5)")
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
        ready: dict[str, float] = {}

        with doppel(data, duplicate_groups="false") as server:
            ready["a"] = server.wait_ready("/health/ready", READY_TIMEOUT_S)
            server.terminate()
        for path in (data / "snapshots").glob("*"):
            path.unlink()
        print(f"a. without pairs, index rebuilt: ready {ready['a']:.2f} s")

        with doppel(data) as server:
            ready["b"] = server.wait_ready("/health/ready", READY_TIMEOUT_S)
            during, page = first_page(server.url)
            progress = page["progress"]
            complete = wait_complete(server.url)
            rss = server.rss_bytes() / 2**20
            pages = [first_page(server.url) for _ in range(args.pages)]
            stop = server.terminate()
        total = pages[0][1]["total"]
        seconds = [elapsed for elapsed, _ in pages]
        print(
            f"b. with pairs, rebuilt: ready {ready['b']:.2f} s ({ready['b'] / ready['a']:.2f}x a); ", end=""
        )
        print(f"pairs complete {complete:.0f} s after ready; VmRSS {rss:.0f} MiB")
        print(f"   first page while building ({progress:.0%} done): {during:.3f} s")
        median = statistics.median(seconds)
        print(f"   first page: median {median:.3f} s (max {max(seconds):.3f}), {total:,} groups")
        sizes = {path.name.split("-")[0]: path.stat().st_size for path in (data / "snapshots").glob("*")}
        print(
            f"c. clean stop {stop:.2f} s; snapshots: "
            + ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in sizes.items())
        )

        with doppel(data, duplicate_groups="false") as server:
            ready["d"] = server.wait_ready("/health/ready", READY_TIMEOUT_S)
            server.terminate()
        print(f"d. without pairs, from the index snapshot: ready {ready['d']:.2f} s")

        with doppel(data, log_level="info") as server:
            ready["e"] = server.wait_ready("/health/ready", READY_TIMEOUT_S)
            complete = wait_complete(server.url)
            pages = [first_page(server.url) for _ in range(args.pages)]
            loaded = "duplicate pairs loaded" in server.log
            server.terminate()
        seconds = [elapsed for elapsed, _ in pages]
        ratio = ready["e"] / ready["d"]
        print(f"e. with pairs, from the snapshots: ready {ready['e']:.2f} s ({ratio:.2f}x d); ", end="")
        print(f"pairs complete {complete:.1f} s after ready (snapshot loaded: {loaded})")
        print(f"   first page: median {statistics.median(seconds):.3f} s (max {max(seconds):.3f}), ", end="")
        print(f"{pages[0][1]['total']:,} groups")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
