"""Scale: the index and the service with 1,000 to 1,000,000 stored hashes.

1. HammingIndex.search latency (median) with 1k, 100k and 1M hashes, sizes taking turns.
   Target: < 1 ms at 1M. Reference in the same run: faiss IndexBinaryFlat without the id map.
2. Bulk load: 1,000,000 random hashes through POST /images/batch (100 requests of 10,000) into
   a running Doppel; /health must count them right after. Target: < 60 s.
3. HTTP POST /search of an ordinary photo against 1M stored hashes vs against 1k (two servers
   side by side, requests taking turns). Target: within 1.3x.
4. Start-up: Doppel restarted on the 1M store until /health answers, vs on an empty store
   (taking turns). Target: < 5 s. Memory: resident bytes per stored image, 1M store vs empty
   store right after start-up (target < 64 B); SQLite file bytes per image (target < 200 B).

Run: python bench/index.py [--searches 300] [--restarts 3]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import faiss
import httpx
import numpy as np
from support import REPO, doppel, median_ms, shared_images, timed

sys.path.insert(0, str(REPO))
from app.index import HammingIndex, hashes_to_codes  # noqa: E402

SIZES = (1_000, 100_000, 1_000_000)
BATCH = 10_000  # items per POST /images/batch, the most it takes
MAX_DISTANCE = 10


def random_hashes(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1 << 64, count, dtype=np.uint64)


def index_latency(searches: int) -> None:
    indexes, flats = {}, {}
    for size in SIZES:
        hashes = random_hashes(size, seed=size)
        indexes[size] = HammingIndex()
        indexes[size].add(np.arange(1, size + 1), hashes)
        flats[size] = faiss.IndexBinaryFlat(64)
        flats[size].add(hashes_to_codes(hashes))
    queries = [int(q) for q in random_hashes(searches, seed=1)]
    ours: dict[int, list[float]] = {size: [] for size in SIZES}
    plain: dict[int, list[float]] = {size: [] for size in SIZES}
    faiss.omp_set_num_threads(1)  # as in the service: one thread per request
    for query in queries:
        code = hashes_to_codes(np.array([query], dtype=np.uint64))
        for size in SIZES:
            ours[size].append(timed(lambda: indexes[size].search([query], max_distance=MAX_DISTANCE)))  # noqa: B023
            plain[size].append(timed(lambda: flats[size].range_search(code, MAX_DISTANCE + 1)))  # noqa: B023
    print(
        f"1. HammingIndex.search, max_distance {MAX_DISTANCE}, median of {searches} searches (sizes taking turns)"
    )
    for size in SIZES:
        print(
            f"   {size:>9,} hashes: {median_ms(ours[size]):7.3f} ms "
            f"({median_ms(ours[size]) / median_ms(ours[SIZES[0]]):6.1f}x the 1k figure; "
            f"plain IndexBinaryFlat.range_search {median_ms(plain[size]):7.3f} ms)"
        )


def bulk_load(url: str, count: int, seed: int) -> float:
    """Seconds to store `count` random hashes through POST /images/batch."""
    hashes = random_hashes(count, seed)
    start = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120) as http:
        for first in range(0, count, BATCH):
            items = [{"hash": f"{int(h):016x}"} for h in hashes[first : first + BATCH]]
            http.post("/images/batch", json={"items": items}).raise_for_status()
    elapsed = time.perf_counter() - start
    counted = httpx.get(url + "/health").json()["images"]
    if counted != count:
        sys.exit(f"/health counts {counted} images after loading {count}")
    return elapsed


def search_latency(small_url: str, large_url: str, photo: bytes, searches: int) -> None:
    samples: dict[str, list[float]] = {small_url: [], large_url: []}
    with httpx.Client(timeout=60) as http:
        for url in (small_url, large_url):  # warm-up
            http.post(url + "/search", files={"file": ("photo", photo)}).raise_for_status()
        for _ in range(searches):
            for url in (small_url, large_url):
                samples[url].append(
                    timed(lambda: http.post(url + "/search", files={"file": ("photo", photo)}))
                )  # noqa: B023
    small, large = median_ms(samples[small_url]), median_ms(samples[large_url])
    print(
        f"3. HTTP POST /search of a {len(photo) // 1024} KiB photo, median of {searches} (servers taking turns)"
    )
    print(f"   1,000 stored: {small:.2f} ms; 1,000,000 stored: {large:.2f} ms: {large / small:.2f}x")


def start_up(full_dir: Path, empty_dir: Path, restarts: int) -> None:
    times: dict[Path, list[float]] = {full_dir: [], empty_dir: []}
    memory: dict[Path, list[int]] = {full_dir: [], empty_dir: []}
    for _ in range(restarts):
        for data_dir in (empty_dir, full_dir):
            with doppel(data_dir) as server:
                times[data_dir].append(server.wait_ready())
                memory[data_dir].append(server.rss_bytes())
    full, empty = statistics.median(times[full_dir]), statistics.median(times[empty_dir])
    per_image = (statistics.median(memory[full_dir]) - statistics.median(memory[empty_dir])) / SIZES[-1]
    print(f"4. start-up until /health answers, median of {restarts} (process start, imports, index rebuild)")
    print(
        f"   1,000,000 stored: {full:.2f} s; empty store: {empty:.2f} s (the rebuild: {full - empty:.2f} s)"
    )
    print(
        f"   resident memory: {statistics.median(memory[full_dir]) / 2**20:.0f} MiB vs "
        f"{statistics.median(memory[empty_dir]) / 2**20:.0f} MiB empty: {per_image:.1f} bytes per stored image"
    )
    database = full_dir / "doppel.sqlite3"
    size = sum(p.stat().st_size for p in full_dir.iterdir() if p.name.startswith(database.name))
    print(f"   SQLite files: {size / 2**20:.0f} MiB, {size / SIZES[-1]:.1f} bytes per stored image")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--searches", type=int, default=300, help="searches per size (default 300)")
    parser.add_argument("--restarts", type=int, default=3, help="start-ups per store (default 3)")
    args = parser.parse_args()
    photo = shared_images("dev")[0].read_bytes()
    index_latency(args.searches)
    with (
        tempfile.TemporaryDirectory() as small_dir,
        tempfile.TemporaryDirectory() as full_dir,
        tempfile.TemporaryDirectory() as empty_dir,
    ):
        with doppel(Path(small_dir)) as small, doppel(Path(full_dir)) as large:
            small.wait_ready()
            large.wait_ready()
            bulk_load(small.url, SIZES[0], seed=2)
            seconds = bulk_load(large.url, SIZES[-1], seed=3)
            print(
                f"2. bulk load: {SIZES[-1]:,} hashes in {SIZES[-1] // BATCH} POST /images/batch of {BATCH:,}: "
                f"{seconds:.1f} s ({SIZES[-1] / seconds:,.0f} per second); /health counts them at once"
            )
            search_latency(small.url, large.url, photo, args.searches)
        start_up(Path(full_dir), Path(empty_dir), args.restarts)


if __name__ == "__main__":
    main()
