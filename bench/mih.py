"""Multi-index hashing (app/index.py's HammingIndex) against the exhaustive scan it replaces (faiss
IndexBinaryIDMap over IndexBinaryFlat, searched as the index before it did), both in one run.

Stored: --size hashes, 90% uniform random, 10% clustered around the dHashes of ../shared/images
(each a dHash with 0-12 random bits flipped), plus, for each of the 1,000 queries, 13 planted
neighbours at distances 0 to 12. Queries: 800 uniform random ("uniform") and 200 shared dHashes
with 0-3 bits flipped ("clustered": in the dense region, with thousands of true matches).

1. Exact: for every radius 0-12 the results of every query equal IndexBinaryFlat's; for a few
   larger radii (the scan fallback, or the chunk search where it still pays) on 50 queries.
2. Search at radius 10, one thread, the two indexes taking turns query by query: p50 / p99 per
   bucket, --repeats passes. Targets: <= 2 / 10 ms at 10M, <= 10 / 50 ms at 100M.
3. Memory: bytes per stored hash of the index's arrays (ids included), and resident growth.
   Target: <= 40 at 100M.
4. Writes into the full index: 10,000 adds one call each, 10,000 in one call, 10,000 removes one
   call each (target: 10,000 adds in under 1 s); then 1,000,000 adds in calls of 10,000, which
   start merges (in a thread of their own): the slowest call, searches while they run, and when
   they are done. And the build: its adds, and its merges finishing after them.
5. Save and load: seconds, file size, and a load in a child process: its seconds and peak
   resident memory against the index's own bytes.
6. Crossover: chunk search against the scan of the main tables, by radius, on 100 uniform
   queries (the index's work only, without building result lists), and what the index picks.

Run: python bench/mih.py --size 10000000 [--queries 1000] [--repeats 2] [--batch 1000000]
Memory: about 8 + 16 + 32 bytes a stored hash (source codes, the flat index, HammingIndex), twice
the largest table while merging; 100M needs about 9 GiB.
"""

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt
from support import status_bytes

REPO = Path(__file__).resolve().parents[1]
SHARED_IMAGES = REPO.parent / "shared" / "images"
sys.path.insert(0, str(REPO))
from app.imaging.hashing import hash_image_bytes  # noqa: E402
from app.index import (  # noqa: E402
    HammingIndex,
    _best_plan,
    _one_openmp_thread,
    _plan_of,
    _Tables,
    hashes_to_codes,
)

Codes = npt.NDArray[np.uint64]
RADIUS = 10
PLANTED = 13  # neighbours per query, at distances 0..12
CLUSTERED_SHARE = 0.10
CLUSTER_FLIPS = 12
QUERY_BUCKETS = {"uniform": 0.8, "clustered": 0.2}


class FlatIndex:
    """The index before: faiss IndexBinaryIDMap over IndexBinaryFlat, searched the same way."""

    def __init__(self, keys: npt.NDArray[np.int64], hashes: Codes) -> None:
        self.index = faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(64))
        for start in range(0, len(keys), 10_000_000):
            chunk = slice(start, start + 10_000_000)
            self.index.add_with_ids(hashes_to_codes(hashes[chunk]), keys[chunk])

    def search(self, hashes: list[int], *, max_distance: int) -> list[list[tuple[int, int]]]:
        queries = hashes_to_codes(np.asarray(hashes, dtype=np.uint64))
        faiss.omp_set_num_threads(1)
        limits, distances, ids = self.index.range_search(queries, max_distance + 1)
        return [
            list(
                zip(
                    ids[limits[q] : limits[q + 1]].tolist(),
                    distances[limits[q] : limits[q + 1]].tolist(),
                    strict=True,
                )
            )
            for q in range(len(hashes))
        ]


def shared_dhashes() -> Codes:
    """The distinct dHashes of the shared images (dev, large, natural)."""
    found = set()
    for folder in ("dev", "large", "natural"):
        for path in sorted((SHARED_IMAGES / folder).iterdir()):
            if path.suffix == ".tsv":
                continue
            found.add(hash_image_bytes(path.read_bytes(), max_pixels=10**9).dhash)
    if not found:
        sys.exit(f"no images under {SHARED_IMAGES}")
    return np.array(sorted(found), dtype=np.uint64)


def flip_bits(rng: np.random.Generator, base: Codes, flips: npt.NDArray[np.int64]) -> Codes:
    """Each of `base` with exactly flips[i] distinct random bits flipped."""
    mask = np.zeros(len(base), dtype=np.uint64)
    for step in range(int(flips.max(initial=0))):
        rows = np.flatnonzero(flips > step)
        while rows.size:
            bit = np.uint64(1) << rng.integers(0, 64, rows.size, dtype=np.uint64)
            fresh = (mask[rows] & bit) == 0
            mask[rows[fresh]] |= bit[fresh]
            rows = rows[~fresh]
    return base ^ mask


def make_data(size: int, queries: int, seed: int) -> tuple[Codes, Codes, list[str]]:
    """Stored hashes (planted neighbours included) and the queries, with each query's bucket."""
    rng = np.random.default_rng(seed)
    centers = shared_dhashes()
    print(f"   {len(centers)} distinct dHashes of shared images as cluster centres")
    stored = rng.integers(0, 1 << 64, size, dtype=np.uint64, endpoint=False)
    clustered = int(size * CLUSTERED_SHARE)
    step = 5_000_000
    for start in range(0, clustered, step):
        count = min(step, clustered - start)
        base = centers[rng.integers(0, len(centers), count)]
        stored[start : start + count] = flip_bits(rng, base, rng.integers(0, CLUSTER_FLIPS + 1, count))
    uniform = int(queries * QUERY_BUCKETS["uniform"])
    query_codes = np.concatenate(
        [
            rng.integers(0, 1 << 64, uniform, dtype=np.uint64, endpoint=False),
            flip_bits(
                rng,
                centers[rng.integers(0, len(centers), queries - uniform)],
                rng.integers(0, 4, queries - uniform),
            ),
        ]
    )
    buckets = ["uniform"] * uniform + ["clustered"] * (queries - uniform)
    planted = flip_bits(rng, np.repeat(query_codes, PLANTED), np.tile(np.arange(PLANTED), queries))
    stored[: len(planted)] = planted  # over the first (clustered) ones: their count barely moves
    rng.shuffle(stored)
    return stored, query_codes, buckets


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def index_bytes(index: HammingIndex) -> int:
    state = index._state
    total = state.dead.nbytes + state.delta_keys.nbytes + state.delta_codes.nbytes
    total += sum(array.nbytes for array in state.frozen[:3])
    for tables in (state.main, state.side):
        arrays = [tables.keys, tables.members, *tables.tables, *tables.offsets]
        total += sum(array.nbytes for array in arrays)
    return total


def as_sets(results: list[list[tuple[int, int]]]) -> list[set[tuple[int, int]]]:
    return [set(hits) for hits in results]


def check_exact(index: HammingIndex, flat: FlatIndex, queries: list[int]) -> None:
    print("1. exact: HammingIndex against IndexBinaryFlat")
    reference: list[list[tuple[int, int]]] = []
    for start in range(0, len(queries), 50):
        reference += flat.search(queries[start : start + 50], max_distance=PLANTED - 1)
    for radius in range(PLANTED):
        mismatches = 0
        hits = 0
        for start in range(0, len(queries), 20):
            found = index.search(queries[start : start + 20], max_distance=radius)
            for got, expected in zip(found, reference[start : start + 20], strict=True):
                within = {(key, distance) for key, distance in expected if distance <= radius}
                hits += len(got)
                mismatches += set(got) != within or len(got) != len(within)
        print(f"   radius {radius:2}: {hits:>10,} hits, {mismatches} queries differ")
        if mismatches:
            sys.exit("NOT EXACT")
    few = queries[:25] + queries[-25:]
    for radius in (14, 16, 20):
        ours = as_sets(index.search(few, max_distance=radius))
        theirs = as_sets(flat.search(few, max_distance=radius))
        differ = sum(a != b for a, b in zip(ours, theirs, strict=True))
        print(f"   radius {radius:2}: {sum(map(len, ours)):>10,} hits on 50 queries, {differ} differ")
        if differ:
            sys.exit("NOT EXACT")


def latency(
    index: HammingIndex, flat: FlatIndex, queries: list[int], buckets: list[str], repeats: int
) -> None:
    print(f"2. search at radius {RADIUS}, one query a call, one thread, {repeats} passes, turns")
    mine: dict[str, list[list[float]]] = {bucket: [] for bucket in QUERY_BUCKETS}
    theirs: dict[str, list[list[float]]] = {bucket: [] for bucket in QUERY_BUCKETS}
    for _ in range(repeats):
        ours: dict[str, list[float]] = {bucket: [] for bucket in QUERY_BUCKETS}
        plain: dict[str, list[float]] = {bucket: [] for bucket in QUERY_BUCKETS}
        for query, bucket in zip(queries, buckets, strict=True):
            ours[bucket].append(timed(lambda: index.search([query], max_distance=RADIUS)))  # noqa: B023
            plain[bucket].append(timed(lambda: flat.search([query], max_distance=RADIUS)))  # noqa: B023
        for bucket in QUERY_BUCKETS:
            mine[bucket].append(ours[bucket])
            theirs[bucket].append(plain[bucket])
    matches = [len(hits) for hits in index.search(queries, max_distance=RADIUS)]
    for bucket in QUERY_BUCKETS:
        chosen = [m for m, b in zip(matches, buckets, strict=True) if b == bucket]
        print(
            f"   {bucket:>9} ({len(chosen)} queries, median {int(np.median(chosen)):,} matches): "
            + "; ".join(
                f"pass {n + 1}: MIH p50 {ms(a, 50):6.3f} p99 {ms(a, 99):7.3f} ms, "
                f"flat p50 {ms(b, 50):7.2f} p99 {ms(b, 99):7.2f} ms"
                for n, (a, b) in enumerate(zip(mine[bucket], theirs[bucket], strict=True))
            )
        )
    every = [t for n in range(repeats) for bucket in QUERY_BUCKETS for t in mine[bucket][n]]
    flat_every = [t for n in range(repeats) for bucket in QUERY_BUCKETS for t in theirs[bucket][n]]
    print(
        f"   all queries: MIH p50 {ms(every, 50):.3f} p99 {ms(every, 99):.3f} max {ms(every, 100):.2f} ms; "
        f"flat p50 {ms(flat_every, 50):.2f} p99 {ms(flat_every, 99):.2f} ms"
    )


def writes(index: HammingIndex, first_key: int, rng: np.random.Generator, queries: list[int]) -> None:
    print("4. writes into the full index")
    hashes = rng.integers(0, 1 << 64, 20_000, dtype=np.uint64, endpoint=False)
    keys = np.arange(first_key, first_key + 20_000, dtype=np.int64)
    pairs = zip(keys[:10_000].tolist(), hashes[:10_000].tolist(), strict=True)
    singles = [timed(partial(index.add, [key], [code])) for key, code in pairs]
    print(f"   10,000 adds, one call each: {sum(singles):.3f} s (slowest call {max(singles) * 1000:.2f} ms)")
    batch = timed(lambda: index.add(keys[10_000:], hashes[10_000:]))
    print(f"   10,000 adds in one call: {batch * 1000:.1f} ms")
    victims = rng.choice(first_key, 10_000, replace=False)
    removes = [timed(partial(index.remove, [key])) for key in victims.tolist()]
    print(
        f"   10,000 removes, one call each: {sum(removes):.3f} s (slowest call {max(removes) * 1000:.2f} ms)"
    )
    more = rng.integers(0, 1 << 64, 1_000_000, dtype=np.uint64, endpoint=False)
    more_keys = np.arange(first_key + 20_000, first_key + 1_020_000, dtype=np.int64)
    bulk = [
        timed(partial(index.add, more_keys[i : i + 10_000], more[i : i + 10_000]))
        for i in range(0, 1_000_000, 10_000)
    ]
    during = [timed(partial(index.search, [int(q)], max_distance=RADIUS)) for q in queries[:300]]
    merging = index._merging
    settle = timed(index._settle)
    print(
        f"   1,000,000 adds in 100 calls: {sum(bulk):.3f} s (slowest call {max(bulk) * 1000:.2f} ms); "
        f"300 searches right after: p50 {ms(during, 50):.3f} p99 {ms(during, 99):.3f} ms "
        f"({'while a merge ran' if merging else 'no merge running'}); merges done {settle:.2f} s later"
    )
    state = index._state
    print(
        f"   now: main {len(state.main):,}, side {len(state.side):,}, buffer {state.delta_size:,}, "
        f"removed pending {state.dead.size:,}"
    )


def save_load(index: HammingIndex, folder: Path, queries: list[int]) -> None:
    print("5. save and load")
    path = folder / "index.bin"
    saved = timed(lambda: index.save(path))
    size = path.stat().st_size
    print(f"   save: {saved:.2f} s, {size / 2**20:,.0f} MiB ({size / len(index):.1f} bytes a hash)")
    reload(index, path, queries)
    gc.collect()
    child = subprocess.run(
        [sys.executable, __file__, "--load-only", str(path)], capture_output=True, text=True, check=True
    )
    report = json.loads(child.stdout)
    print(
        f"   load in a fresh process: {report['seconds']:.2f} s, its tables built {report['built']:.2f} s "
        f"later (searched by a scan meanwhile); peak resident growth "
        f"{report['peak_growth'] / 2**20:,.0f} MiB for an index of {report['index_bytes'] / 2**20:,.0f} MiB "
        f"({report['peak_growth'] / report['index_bytes']:.2f}x)"
    )
    path.unlink()


def reload(index: HammingIndex, path: Path, queries: list[int]) -> None:
    loaded = HammingIndex()
    took = timed(lambda: loaded.load(path))
    took += timed(loaded._settle)
    same = as_sets(loaded.search(queries[:50], max_distance=RADIUS)) == as_sets(
        index.search(queries[:50], max_distance=RADIUS)
    )
    print(
        f"   load in this process, tables built: {took:.2f} s, {len(loaded):,} hashes, same results: {same}"
    )


def load_only(path: Path) -> None:
    """Child process of save_load: load and report seconds and peak resident memory growth."""
    before = status_bytes("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM, the peak, to the current size
    index = HammingIndex()
    seconds = timed(lambda: index.load(path))
    built = timed(index._settle)
    peak = status_bytes("VmHWM")
    report = {
        "seconds": seconds,
        "built": built,
        "peak_growth": peak - before,
        "index_bytes": index_bytes(index),
    }
    print(json.dumps(report))


def crossover(index: HammingIndex, queries: list[int]) -> None:
    main: _Tables = index._state.main
    size = len(main)
    print(
        f"6. chunk search vs scan of the main tables ({size:,} hashes, bits {main.bits}), 100 uniform queries"
    )
    codes = [np.array([q], dtype=np.uint64) for q in queries[:100]]
    _one_openmp_thread()
    slower = 0  # radii in a row where the chunk search took over twice the scan's time
    for radius in (8, 10, 12, 14, 16, 18, 20, 22, 24, 28, 32):
        best = _best_plan(size, main.bits, radius)
        scan = [timed(lambda: main.scan(code, radius)) for code in codes]  # noqa: B023
        chosen = main._plan(radius)
        picks = "scan" if chosen is None else f"chunks {chosen.radii}"
        if best is None or slower >= 2:
            print(f"   radius {radius:2}: scan p50 {ms(scan, 50):7.2f} ms; picks {picks}")
            continue
        plan = _plan_of(main.bits, best[1])
        probe = [timed(lambda: main.probe(code, radius, plan)) for code in codes]  # noqa: B023
        slower = slower + 1 if ms(probe, 50) > 2 * ms(scan, 50) else 0
        print(
            f"   radius {radius:2}: chunks {plan.radii} p50 {ms(probe, 50):7.2f} ms "
            f"(model {best[0] / 1e6:7.2f}), "
            f"scan p50 {ms(scan, 50):7.2f} ms; picks {picks}"
        )


def build(size: int, queries: int, seed: int, batch: int) -> tuple[HammingIndex, FlatIndex, Codes, list[str]]:
    """Both indexes over the same data, HammingIndex built by adds of `batch` hashes."""
    started = time.perf_counter()
    stored, query_codes, buckets = make_data(size, queries, seed)
    keys = np.arange(1, size + 1, dtype=np.int64)
    print(f"   data: {time.perf_counter() - started:.1f} s")
    flat = FlatIndex(keys, stored)
    gc.collect()
    before = status_bytes("VmRSS")
    index = HammingIndex()
    calls = []
    for start in range(0, size, batch):
        chunk = slice(start, start + batch)
        calls.append(timed(lambda: index.add(keys[chunk], stored[chunk])))  # noqa: B023
    settle = timed(index._settle)
    gc.collect()
    state = index._state
    print(
        f"   built by {len(calls)} adds of {batch:,}: {sum(calls):.1f} s (slowest {max(calls):.2f} s), "
        f"merges done {settle:.1f} s later; "
        f"main {len(state.main):,}, side {len(state.side):,}, buffer {state.delta_size:,}; "
        f"resident growth {(status_bytes('VmRSS') - before) / size:.1f} bytes a hash"
    )
    return index, flat, query_codes, buckets


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1_000_000, help="hashes per add call when building")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the saved index")
    parser.add_argument("--load-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_only:
        load_only(args.load_only)
        return
    faiss.omp_set_num_threads(1)
    print(f"Doppel MIH benchmark: {args.size:,} stored hashes, {args.queries} queries, pid {os.getpid()}")
    started = time.perf_counter()
    index, flat, query_codes, buckets = build(args.size, args.queries, args.seed, args.batch)
    queries = [int(q) for q in query_codes]
    check_exact(index, flat, queries)
    latency(index, flat, queries, buckets, args.repeats)
    total = index_bytes(index)
    print(
        f"3. memory: HammingIndex arrays {total / 2**20:,.0f} MiB = {total / len(index):.1f} bytes a hash "
        "(ids included); flat: 16 bytes a hash (codes and ids); "
        f"peak resident {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB"
    )
    writes(index, args.size + 1, np.random.default_rng(args.seed + 1), queries)
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        save_load(index, Path(folder), queries)
    crossover(index, queries[: int(args.queries * QUERY_BUCKETS["uniform"])])
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
