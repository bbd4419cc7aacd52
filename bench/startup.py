"""Start-up at scale: one server (`python main.py`) on a store of millions of images, its index
rebuilt from the store or loaded from a snapshot. Target: start-up at 10M stored under 10 s.

For each store (--stores: a SQLite file, a PostgreSQL database) the store is filled up to each of
--sizes (default 1M, then 10M: the same store grows) through the store API, not over HTTP:
rows as an uploaded photo's (random hashes: the whole picture's three, its centre's three, and for
--cut-share of them one other cut; a size and a SHA-256; no metadata), 100,000 per write
transaction. Then, --repeats times:

 a. start with no snapshot (the index rebuilt from the store) until /health/ready answers 200;
 b. stop it cleanly (SIGTERM: it writes its index snapshot): seconds until it exited, snapshot size;
 c. start again, from the snapshot, until ready;
 d. write --more rows (10,000) from this process while the server is down, then start from the
    snapshot (which it loads, then reads the log since) until ready.

Each start is checked: /health counts every stored image, and the log says whether a snapshot was
loaded. Also printed: resident memory after each start (VmRSS; the peak, VmHWM, for the rebuild),
the store's bytes on disk per image and, once --more images are deleted, per tombstone; and, to say
where a start's time goes, its parts timed in this process (reading every hash through
iter_hashes, adding them to a HammingIndex, loading the snapshot).
Reference in the same run: a start on an empty store (process start, imports, an empty index).

Run: python bench/startup.py [--stores sqlite,postgres] [--sizes 1000000,10000000] [--repeats 2]
     [--cut-share 0.05]
PostgreSQL runs create a database of their own on the server of --postgres-url and drop it after
(the filled store is vacuumed, as a store in service would be, before the starts are timed).
"""

import argparse
import re
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from support import DEFAULT_POSTGRES_URL, REPO, Server, doppel, fresh_postgres, spread, stop_on_sigterm

sys.path.insert(0, str(REPO))
from app.image_index import ImageIndex  # noqa: E402
from app.imaging import HASHING_VERSION
from app.models import NewImage  # noqa: E402
from app.service.sync import REBUILD_BATCH  # noqa: E402
from app.store import ImageStore, SQLiteImageStore  # noqa: E402

FILL_BATCH = 100_000
TARGET_S = 10.0
TARGET_SIZE = 10_000_000
STORES = ("sqlite", "postgres")
_LOADED = re.compile(r"index loaded from (\S+) at log position (\d+)")


@dataclass
class Starts:
    """Seconds and memory of each kind of start, one entry per repeat."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    rss: dict[str, list[int]] = field(default_factory=dict)
    peak: dict[str, list[int]] = field(default_factory=dict)

    def record(self, kind: str, seconds: float, server: Server) -> None:
        self.seconds.setdefault(kind, []).append(seconds)
        self.rss.setdefault(kind, []).append(server.rss_bytes())
        self.peak.setdefault(kind, []).append(server.peak_rss_bytes())


class Store:
    """A store under test: where the server finds it, and this process's handle on it."""

    def __init__(self, kind: str, data_dir: Path, stack: ExitStack, postgres_url: str) -> None:
        self.kind = kind
        self.data_dir = data_dir
        self.url: str | None = None
        self.last_log = ""  # of the last server stopped on this store
        self.store: ImageStore
        if kind == "postgres":
            self.url = stack.enter_context(fresh_postgres(postgres_url))
            from app.store.postgres import PostgresImageStore

            self.store = PostgresImageStore(self.url)
        else:  # the server's default: doppel.sqlite3 in its data folder
            self.store = SQLiteImageStore(data_dir / "doppel.sqlite3")
        stack.callback(self.store.close)
        self.count = self.store.count()  # stored now
        self.added = self.count  # ever added: the next id's number
        self.deleted = 0  # the oldest images deleted so far

    def fill(self, upto: int, rng: np.random.Generator, cut_share: float) -> float:
        """Add rows as an uploaded photo's until the store holds `upto`; seconds it took."""
        start = time.perf_counter()
        while self.count < upto:
            batch = min(FILL_BATCH, upto - self.count)
            hashes = rng.integers(0, 2**64, size=(batch, 9), dtype=np.uint64).tolist()
            has_cut = (rng.random(batch) < cut_share).tolist()
            digests = rng.bytes(32 * batch)
            images = [
                NewImage(
                    id=f"img-{self.added + n:010d}",
                    dhash=h[0],
                    width=1600,
                    height=1200,
                    dhash_vertical=h[1],
                    dct_hash=h[2],
                    centre_dhash=h[3],
                    centre_vertical=h[4],
                    centre_dct=h[5],
                    cuts=((h[6], h[7], h[8]),) if cut else (),
                    sha256=digests[32 * n : 32 * n + 32].hex(),
                    hashing_version=HASHING_VERSION,
                )
                for n, (h, cut) in enumerate(zip(hashes, has_cut, strict=True))
            ]
            with self.store.writing() as write:
                write.add(images)
            self.count += batch
            self.added += batch
        return time.perf_counter() - start

    def delete(self, count: int) -> None:
        """Delete the `count` oldest images still stored, in one transaction (a tombstone each)."""
        with self.store.writing() as write:
            for n in range(self.deleted, self.deleted + count):
                if write.delete(f"img-{n:010d}") is None:
                    raise RuntimeError(f"img-{n:010d} is not stored")
        self.deleted += count
        self.count -= count

    def vacuum(self) -> float:
        """PostgreSQL: VACUUM ANALYZE the tables (sets hint bits and the visibility map, as
        autovacuum would in service); seconds. Nothing for SQLite."""
        if self.url is None:
            return 0.0
        import psycopg

        start = time.perf_counter()
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
        return time.perf_counter() - start

    def relations(self) -> list[tuple[str, str, int]]:
        """(table or index, its table, bytes on disk) of every table and index of the store: SQLite's
        pages (dbstat, the WAL left out), PostgreSQL's relations (pg_relation_size)."""
        if self.url is None:
            with closing(sqlite3.connect(self.data_dir / "doppel.sqlite3")) as db:
                rows = db.execute(
                    "SELECT d.name, s.tbl_name, sum(d.pgsize) FROM dbstat AS d "
                    "JOIN sqlite_schema AS s ON s.name = d.name GROUP BY d.name"
                ).fetchall()
            return [(str(name), str(table), int(size)) for name, table, size in rows]
        import psycopg

        with psycopg.connect(self.url) as conn:
            found = conn.execute(
                "SELECT c.relname, coalesce(t.relname, c.relname), pg_relation_size(c.oid) "
                "FROM pg_class AS c LEFT JOIN pg_index AS i ON i.indexrelid = c.oid "
                "LEFT JOIN pg_class AS t ON t.oid = i.indrelid "
                "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'i')"
            ).fetchall()
        return [(str(name), str(table), int(size)) for name, table, size in found]

    def on_disk(self) -> str:
        """Bytes per image of the images table and its indexes."""
        relations = self.relations()
        table = sum(size for name, _, size in relations if name == "images")
        indexes = [(name, size) for name, of, size in relations if of == "images" and name != "images"]
        total = table + sum(size for _, size in indexes)
        listed = ", ".join(f"{name} {size / self.count:.1f}" for name, size in indexes) or "none apart"
        return (
            f"images {table / self.count:.1f} B + indexes ({listed}) = {total / self.count:.1f} B per image"
        )

    def tombstone_bytes(self) -> float:
        """Bytes on disk of the tombstones table and its indexes, per delete made."""
        tombstones = sum(size for _, of, size in self.relations() if of == "tombstones")
        return tombstones / self.deleted

    def server(self) -> Server:
        return doppel(self.data_dir, database_url=self.url, log_level="info")


def snapshots(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "snapshots").glob("*.faiss"))


@contextmanager
def started(store: Store, timeout_s: float, starts: Starts, kind: str, *, snapshot: bool) -> Iterator[Server]:
    """A server on `store`, ready; its start recorded as `kind`. Checks that it holds every image, and
    that it loaded a snapshot or not, as `snapshot` says. Stopped cleanly (SIGTERM) at the end."""
    with store.server() as server:
        seconds = server.wait_ready("/health/ready", timeout_s)
        starts.record(kind, seconds, server)
        images = httpx.get(server.url + "/health", timeout=60).json()["images"]
        if images != store.count:
            raise RuntimeError(f"{kind}: the server holds {images} images, the store {store.count}")
        loaded = _LOADED.search(server.log)
        if (loaded is not None) != snapshot:
            said = "loaded" if loaded else "not loaded"
            raise RuntimeError(
                f"{kind}: a snapshot was {said}. This run's log:\n{server.log[-2000:]}\n"
                f"The log of the run before, on this store:\n{store.last_log[-2000:]}\n"
                f"Snapshots: {snapshots(store.data_dir)}"
            )
        yield server
        if server.process.poll() is None:
            server.terminate()
        store.last_log = server.log


def parts(store: Store) -> str:
    """A start's parts timed in this process: read every hash, add them to an index, save and load."""
    head = store.store.head()
    index = ImageIndex()
    read = add = 0.0
    start = time.perf_counter()
    for batch in store.store.iter_hashes(REBUILD_BATCH, upto=head):
        got = time.perf_counter()
        index.add(batch)
        done = time.perf_counter()
        read, add = read + got - start, add + done - got
        start = done
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.faiss"
        index.save(path)
        start = time.perf_counter()
        ImageIndex().load(path)
        load = time.perf_counter() - start
    return (
        f"read every hash (iter_hashes) {read:.2f} s, add them to an index {add:.2f} s, "
        f"load its snapshot {load:.2f} s"
    )


def run_size(
    store: Store, empty: Store, size: int, args: argparse.Namespace, rng: np.random.Generator
) -> None:
    had = store.count
    fill = store.fill(size, rng, args.cut_share)
    vacuum = store.vacuum()
    print(f"\n{store.kind}, {store.count:,} images", end="")
    if store.count > had:
        rate = (store.count - had) / fill
        print(f" (filled {store.count - had:,} in {fill:.0f} s, {rate:,.0f} rows/s", end="")
        print(f"; VACUUM ANALYZE {vacuum:.0f} s)" if store.url else ")", end="")
    print()
    starts = Starts()
    stops: list[float] = []
    snapshot_bytes: list[int] = []  # of the first snapshot, written at `snapshot_count` images
    snapshot_count = store.count
    for _ in range(args.repeats):
        with started(empty, args.timeout, starts, "empty store", snapshot=False):
            pass
        for path in snapshots(store.data_dir):
            path.unlink()
        with started(store, args.timeout, starts, "rebuild", snapshot=False) as server:
            stops.append(server.terminate())
        snapshot_bytes += [path.stat().st_size for path in snapshots(store.data_dir)]
        with started(store, args.timeout, starts, "snapshot", snapshot=True) as server:
            server.terminate()
        store.fill(store.count + args.more, rng, args.cut_share)
        with started(store, args.timeout, starts, f"snapshot + {args.more:,} more", snapshot=True):
            pass  # its stop saves a snapshot with the rows added, for the next start
    print(f"   {'start until /health/ready':<34}{'seconds, median (min-max)':>28}", end="")
    print(f"{'VmRSS MiB':>11}{'VmHWM MiB':>11}")
    for kind, seconds in starts.seconds.items():
        rss = np.median(starts.rss[kind]) / 2**20
        peak = np.median(starts.peak[kind]) / 2**20
        print(f"   {kind:<34}{spread(seconds):>28}{rss:>11.0f}{peak:>11.0f}")
    memory = (np.median(starts.rss["snapshot"]) - np.median(starts.rss["empty store"])) / store.count
    snapshot_mib = snapshot_bytes[0] / 2**20
    print(f"   clean stop (SIGTERM, snapshot written): {spread(stops)}; snapshot file {snapshot_mib:.0f} MiB")
    print(f"   bytes per image: {snapshot_bytes[0] / snapshot_count:.1f} in the snapshot, ", end="")
    print(f"{memory:.1f} resident (snapshot start vs empty)")
    print(f"   on disk: {store.on_disk()}")
    store.delete(args.more)
    print(f"   on disk, a tombstone: {store.tombstone_bytes():.1f} B per delete ({store.deleted:,} deleted)")
    print(f"   in this process: {parts(store)}")
    if store.count >= TARGET_SIZE:
        loaded = max(starts.seconds["snapshot"] + starts.seconds[f"snapshot + {args.more:,} more"])
        rebuilt = max(starts.seconds["rebuild"])
        print(f"   target < {TARGET_S:.0f} s at {TARGET_SIZE:,}: ", end="")
        print(
            f"from a snapshot {'met' if loaded < TARGET_S else 'NOT met'} (slowest {loaded:.1f} s); ", end=""
        )
        print(f"rebuilt {'met' if rebuilt < TARGET_S else 'NOT met'} (slowest {rebuilt:.1f} s)")


def sizes(text: str) -> list[int]:
    return sorted(int(part.replace("_", "")) for part in text.split(","))


def stores(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",")]
    unknown = set(chosen) - set(STORES)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown store {', '.join(sorted(unknown))}; choose from {STORES}")
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", type=stores, default=list(STORES), help="default: sqlite,postgres")
    parser.add_argument(
        "--sizes", type=sizes, default=[1_000_000, 10_000_000], help="default: 1000000,10000000"
    )
    parser.add_argument("--repeats", type=int, default=2, help="start cycles per size (default 2)")
    parser.add_argument(
        "--cut-share", type=float, default=0.05, help="images with a cut (0-1; default 0.05, photos')"
    )
    parser.add_argument(
        "--more", type=int, default=10_000, help="rows written while it is down (default 10000)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds a start may take before it fails (default 600)"
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help=f"a PostgreSQL server to create the database on (default {DEFAULT_POSTGRES_URL})",
    )
    args = parser.parse_args()
    stop_on_sigterm()
    rng = np.random.default_rng(7)
    for kind in args.stores:
        work = Path(tempfile.mkdtemp(prefix="doppel-startup-"))
        try:
            with ExitStack() as stack:
                store = Store(kind, work / "data", stack, args.postgres_url)
                empty = Store(kind, work / "empty", stack, args.postgres_url)
                for size in args.sizes:
                    run_size(store, empty, size, args, rng)
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
