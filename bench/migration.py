"""The cost of the schema migration at start, and of counting the records on an older hashing.

For each store (--stores) and size (--sizes, default 1M), a store at schema 1 is made as Doppel
made it (the tables of migration 1, hash-only rows, PostgreSQL without its doppel_schema table),
then, --repeats times on a fresh copy (SQLite) or a fresh database (PostgreSQL):

 a. open it with the store class (migration 1 -> 2 in one transaction): seconds;
 b. open it again, now at this code's version (no migration): seconds, the reference;
 c. count the records on an older hashing version (the start log's query, on the index that
    migration 2 makes): seconds.

Printed: each as median (min-max), and a and c as ratios to b. Then what that index costs writes:
--write-rows (1M) hash-only rows added to a new store through the store API, 100,000 per transaction,
with the index and, as the reference, with it dropped (alternating, --repeats times each).

Run: python bench/migration.py [--stores sqlite,postgres] [--sizes 1000000] [--repeats 3]
                              [--write-rows 1000000]
"""

import argparse
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
from support import DEFAULT_POSTGRES_URL, REPO, fresh_postgres, spread, stop_on_sigterm

sys.path.insert(0, str(REPO))
from app.imaging import HASHING_VERSION  # noqa: E402
from app.models import NewImage  # noqa: E402
from app.store import ImageStore, SQLiteImageStore  # noqa: E402
from app.store.migrations import MIGRATIONS  # noqa: E402

FILL_BATCH = 100_000


def rows(size: int) -> Iterator[list[tuple[int, str, int, int]]]:
    """(key, id, dhash, created_at) of `size` hash-only images, FILL_BATCH at a time."""
    rng = np.random.default_rng(7)
    for start in range(0, size, FILL_BATCH):
        count = min(FILL_BATCH, size - start)
        hashes = rng.integers(-(2**63), 2**63 - 1, size=count, dtype=np.int64).tolist()
        yield [(start + n + 1, f"img-{start + n:010d}", h, 0) for n, h in enumerate(hashes)]


def sqlite_v1(path: Path, size: int) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN")
    for statement in MIGRATIONS[0].sqlite:
        db.execute(statement)
    for batch in rows(size):
        db.executemany("INSERT INTO images (key, id, dhash, created_at) VALUES (?, ?, ?, ?)", batch)
    db.execute("UPDATE log_head SET position = ?", (size,))
    db.execute("PRAGMA user_version=1")
    db.execute("COMMIT")
    db.close()


def postgres_v1(url: str, size: int) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            for statement in MIGRATIONS[0].postgres:
                conn.execute(statement)
            with (
                conn.cursor() as cursor,
                cursor.copy("COPY images (key, id, dhash, created_at) FROM STDIN") as copy,
            ):
                for batch in rows(size):
                    for row in batch:
                        copy.write_row(row)
            conn.execute("UPDATE log_head SET position = %s", (size,))
        conn.execute("VACUUM ANALYZE images")  # as a store in service would be


@contextmanager
def v1_store(kind: str, size: int, template: Path) -> Iterator[tuple[str, Path | None]]:
    """A fresh store at schema 1: (PostgreSQL URL or "", SQLite path or None)."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "doppel.sqlite3"
            shutil.copy(template, path)
            yield "", path
        return
    with fresh_postgres(DEFAULT_POSTGRES_URL) as url:
        postgres_v1(url, size)
        yield url, None


def open_store(url: str, path: Path | None) -> ImageStore:
    if path is not None:
        return SQLiteImageStore(path)
    from app.store.postgres import PostgresImageStore

    return PostgresImageStore(url)


def opened(url: str, path: Path | None) -> tuple[ImageStore, float]:
    """The store and the seconds it took to open."""
    start = time.perf_counter()
    store = open_store(url, path)
    return store, time.perf_counter() - start


def measure(kind: str, size: int, repeats: int, template: Path) -> None:
    migrate: list[float] = []
    reference: list[float] = []
    count: list[float] = []
    for _ in range(repeats):
        with v1_store(kind, size, template) as (url, path):
            store, seconds = opened(url, path)
            assert store.migrated_from == 1
            migrate.append(seconds)
            store.close()
            store, seconds = opened(url, path)
            assert store.migrated_from is None
            reference.append(seconds)
            start = time.perf_counter()
            assert store.count_older(HASHING_VERSION) == 0
            count.append(time.perf_counter() - start)
            store.close()
    ref = statistics.median(reference)
    cells = [f"{spread([1000 * s for s in migrate], 'ms', 1)} ({statistics.median(migrate) / ref:.1f}x)"]
    cells += [spread([1000 * s for s in reference], "ms", 1)]
    cells += [f"{spread([1000 * s for s in count], 'ms', 1)} ({statistics.median(count) / ref:.1f}x)"]
    print(f"| {kind} | {size:,} | {' | '.join(cells)} |", flush=True)


def drop_index(url: str, path: Path | None) -> None:
    if path is not None:
        db = sqlite3.connect(path)
        db.execute("DROP INDEX images_hashing_version")
        db.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP INDEX images_hashing_version")


def write_seconds(kind: str, size: int, folder: Path, *, indexed: bool) -> float:
    with ExitStack() as stack:
        url, path = "", None
        if kind == "sqlite":
            path = folder / f"{secrets.token_hex(4)}.sqlite3"
            stack.callback(path.unlink)
        else:
            url = stack.enter_context(fresh_postgres(DEFAULT_POSTGRES_URL))
        store = open_store(url, path)
        stack.callback(store.close)
        if not indexed:
            drop_index(url, path)
        start = time.perf_counter()
        for batch in rows(size):
            images = [
                NewImage(id=image_id, dhash=dhash, width=None, height=None, hashing_version=HASHING_VERSION)
                for _, image_id, dhash, _ in batch
            ]
            with store.writing() as write:
                write.add(images)
        return time.perf_counter() - start


def measure_writes(kind: str, size: int, repeats: int, folder: Path) -> None:
    seconds: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(repeats):
        for indexed in (False, True):
            seconds[indexed].append(write_seconds(kind, size, folder, indexed=indexed))
    rates = {indexed: [size / s for s in values] for indexed, values in seconds.items()}
    ratio = statistics.median(seconds[True]) / statistics.median(seconds[False])
    print(
        f"| {kind} | {size:,} | {spread(rates[True], 'rows/s', 0)} | {spread(rates[False], 'rows/s', 0)} "
        f"| {ratio:.2f}x |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--sizes", default="1000000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    stop_on_sigterm()
    print("| store | images | open, migrating 1 -> 2 | open, at 2 (reference) | count on older hashing |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for size in (int(s) for s in args.sizes.split(",")):
            template = Path(folder) / f"v1-{size}.sqlite3"
            if "sqlite" in args.stores:
                sqlite_v1(template, size)
            for kind in args.stores.split(","):
                measure(kind, size, args.repeats, template)
        print("\n| store | rows added | with the index | without (reference) | time, with / without |")
        print("|---|---|---|---|---|")
        for kind in args.stores.split(","):
            measure_writes(kind, args.write_rows, args.repeats, Path(folder))


if __name__ == "__main__":
    main()
