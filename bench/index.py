"""Scale: the index and the service with 1,000 to 1,000,000 stored hashes.

1. HammingIndex.search latency (median) with 1k, 100k and 1M hashes (--search-sizes), sizes taking
   turns. Target: < 1 ms at 1M. Reference in the same run: faiss IndexBinaryFlat without the id map.
2. Bulk load: 1,000,000 random hashes through POST /images/batch (100 requests of 10,000) into
   a running Doppel; /health must count them right after. Target: < 60 s.
3. HTTP POST /search of an ordinary photo against 1M stored hashes vs against 1k (two servers
   side by side, requests taking turns). Target: within 1.3x.
4. Start-up: Doppel restarted on the 1M store until /health answers, vs on an empty store
   (taking turns), its index rebuilt from the store each time (the snapshot a clean stop writes is
   removed first; bench/startup.py times starts from a snapshot). Target: < 5 s. Memory: resident
   bytes per stored image, 1M store vs empty store right after start-up (target < 64 B); store
   bytes per image on disk, SQLite files or PostgreSQL tables (target < 200 B).

The stores are SQLite files in the servers' data folders, or with --database-url, PostgreSQL
databases created for the run on that server (and dropped after).

Run: python bench/index.py [--searches 300] [--restarts 3] [--steps 1,2,3,4] [--database-url URL]
"""

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import faiss
import httpx
import numpy as np
from support import (
    REPO,
    doppel,
    fresh_postgres,
    is_postgres,
    median_ms,
    shared_images,
    stop_on_sigterm,
    timed,
)

sys.path.insert(0, str(REPO))
from app.index import HammingIndex, hashes_to_codes  # noqa: E402

SIZES = (1_000, 100_000, 1_000_000)
SMALL, LARGE = 1_000, 1_000_000  # stored in the small and the large server of steps 2-4
BATCH = 10_000  # items per POST /images/batch, the most it takes
MAX_DISTANCE = 10


def random_hashes(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1 << 64, count, dtype=np.uint64)


def index_latency(searches: int, sizes: tuple[int, ...]) -> None:
    indexes, flats = {}, {}
    for size in sizes:
        hashes = random_hashes(size, seed=size)
        indexes[size] = HammingIndex()
        indexes[size].add(np.arange(1, size + 1), hashes)
        flats[size] = faiss.IndexBinaryFlat(64)
        flats[size].add(hashes_to_codes(hashes))
    queries = [int(q) for q in random_hashes(searches, seed=1)]
    ours: dict[int, list[float]] = {size: [] for size in sizes}
    plain: dict[int, list[float]] = {size: [] for size in sizes}
    faiss.omp_set_num_threads(1)  # as in the service: one thread per request
    for query in queries:
        code = hashes_to_codes(np.array([query], dtype=np.uint64))
        for size in sizes:
            ours[size].append(timed(partial(indexes[size].search, [query], max_distance=MAX_DISTANCE)))
            plain[size].append(timed(partial(flats[size].range_search, code, MAX_DISTANCE + 1)))
    print(f"1. HammingIndex.search, max_distance {MAX_DISTANCE}, ", end="")
    print(f"median of {searches} searches (sizes taking turns)")
    width = max(9, len(f"{sizes[-1]:,}"))
    for size in sizes:
        print(
            f"   {size:>{width},} hashes: {median_ms(ours[size]):7.3f} ms "
            f"({median_ms(ours[size]) / median_ms(ours[sizes[0]]):6.1f}x the {sizes[0]:,} figure; "
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
                search = partial(http.post, url + "/search", files={"file": ("photo", photo)})
                samples[url].append(timed(search))
    small, large = median_ms(samples[small_url]), median_ms(samples[large_url])
    print(f"3. HTTP POST /search of a {len(photo) // 1024} KiB photo, ", end="")
    print(f"median of {searches} (servers taking turns)")
    print(f"   1,000 stored: {small:.2f} ms; 1,000,000 stored: {large:.2f} ms: {large / small:.2f}x")


def start_up(full_dir: Path, empty_dir: Path, restarts: int, urls: dict[Path, str | None]) -> None:
    times: dict[Path, list[float]] = {full_dir: [], empty_dir: []}
    memory: dict[Path, list[int]] = {full_dir: [], empty_dir: []}
    for _ in range(restarts):
        for data_dir in (empty_dir, full_dir):
            for snapshot in (data_dir / "snapshots").glob("*.faiss"):
                snapshot.unlink()  # written by the last clean stop: this start rebuilds the index
            with doppel(data_dir, database_url=urls[data_dir]) as server:
                times[data_dir].append(server.wait_ready())
                memory[data_dir].append(server.rss_bytes())
    full, empty = statistics.median(times[full_dir]), statistics.median(times[empty_dir])
    full_rss, empty_rss = statistics.median(memory[full_dir]), statistics.median(memory[empty_dir])
    per_image = (full_rss - empty_rss) / LARGE
    print(f"4. start-up until /health answers, median of {restarts} (process start, imports, index rebuild)")
    print(
        f"   1,000,000 stored: {full:.2f} s; empty store: {empty:.2f} s (the rebuild: {full - empty:.2f} s)"
    )
    print(f"   resident memory: {full_rss / 2**20:.0f} MiB vs {empty_rss / 2**20:.0f} MiB empty: ", end="")
    print(f"{per_image:.1f} bytes per stored image")
    url = urls[full_dir]
    if url is None:
        database = full_dir / "doppel.sqlite3"
        size = sum(p.stat().st_size for p in full_dir.iterdir() if p.name.startswith(database.name))
        print(f"   SQLite files: {size / 2**20:.0f} MiB, {size / LARGE:.1f} bytes per stored image")
    else:
        size = postgres_bytes(url)
        print(f"   PostgreSQL tables: {size / 2**20:.0f} MiB, {size / LARGE:.1f} bytes per stored image")


def postgres_bytes(url: str) -> int:
    """The store's tables with their indexes, on disk."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT pg_total_relation_size('images') + pg_total_relation_size('tombstones') "
            "+ pg_total_relation_size('log_head')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def steps(text: str) -> set[int]:
    chosen = {int(part) for part in text.split(",")}
    if not chosen <= {1, 2, 3, 4}:
        raise argparse.ArgumentTypeError("steps are 1, 2, 3 and 4")
    return chosen


def sizes(text: str) -> tuple[int, ...]:
    return tuple(sorted(int(part.replace("_", "")) for part in text.split(",")))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--searches", type=int, default=300, help="searches per size (default 300)")
    parser.add_argument("--restarts", type=int, default=3, help="start-ups per store (default 3)")
    parser.add_argument(
        "--steps",
        type=steps,
        default={1, 2, 3, 4},
        help="which steps to run (default 1,2,3,4); 3 and 4 use the stores 2 fills, so either runs 2",
    )
    parser.add_argument(
        "--search-sizes",
        type=sizes,
        default=SIZES,
        help="stored hashes of step 1 (default 1000,100000,1000000)",
    )
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (postgresql://...): each server's store is a database created on it for "
        "the run and dropped after (default: SQLite files in the servers' data folders)",
    )
    args = parser.parse_args()
    if args.database_url is not None and not is_postgres(args.database_url):
        parser.error("--database-url takes a postgresql:// URL (SQLite is the default)")
    stop_on_sigterm()
    if 1 in args.steps:
        index_latency(args.searches, args.search_sizes)
    if not args.steps & {2, 3, 4}:
        return
    photo = shared_images("dev")[0].read_bytes()
    with ExitStack() as stack:
        small_dir, full_dir, empty_dir = (
            Path(stack.enter_context(tempfile.TemporaryDirectory())) for _ in range(3)
        )
        urls: dict[Path, str | None] = {
            folder: stack.enter_context(fresh_postgres(args.database_url)) if args.database_url else None
            for folder in (small_dir, full_dir, empty_dir)
        }
        with (
            doppel(small_dir, database_url=urls[small_dir]) as small,
            doppel(full_dir, database_url=urls[full_dir]) as large,
        ):
            small.wait_ready()
            large.wait_ready()
            bulk_load(small.url, SMALL, seed=2)
            seconds = bulk_load(large.url, LARGE, seed=3)
            if 2 in args.steps:
                print(
                    f"2. bulk load: {LARGE:,} hashes in {LARGE // BATCH} POST /images/batch of {BATCH:,}: ",
                    end="",
                )
                print(f"{seconds:.1f} s ({LARGE / seconds:,.0f} per second); /health counts them at once")
            if 3 in args.steps:
                search_latency(small.url, large.url, photo, args.searches)
        if 4 in args.steps:
            start_up(full_dir, empty_dir, args.restarts, urls)


if __name__ == "__main__":
    main()
