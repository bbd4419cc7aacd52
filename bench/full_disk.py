"""A SQLite store on a full disk: how much it held, whether deletes commit on the full disk, how many
additions fit in the room deletes freed, and whether deletes still commit after that.

Run on a small filesystem of its own (it is filled), e.g. as root:
    mount -t tmpfs -o size=16m tmpfs /mnt/small && python bench/full_disk.py /mnt/small
Each write is a transaction of its own, as the API makes them; records carry 100 bytes of metadata.
"""

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.errors import StoreFull  # noqa: E402
from app.models import NewImage  # noqa: E402
from app.store.sqlite import SQLiteImageStore  # noqa: E402


def image(image_id: str, n: int) -> NewImage:
    return NewImage(id=image_id, dhash=n, width=1, height=1, metadata={"pad": "x" * 100}, hashing_version=1)


def add_until_full(store: SQLiteImageStore, prefix: str, batch: int) -> int:
    """Add batches of `batch` records, then single ones, until one is refused; how many were stored."""
    stored = 0
    for size in (batch, 1):
        try:
            while True:
                with store.writing() as write:
                    write.add([image(f"{prefix}{stored + n}", stored + n) for n in range(size)])
                stored += size
        except StoreFull:
            pass
    return stored


def delete(store: SQLiteImageStore, ids: list[str]) -> int:
    """Delete these ids one by one until one is refused; how many were deleted."""
    for done, image_id in enumerate(ids):
        try:
            with store.writing() as write:
                write.delete(image_id)
        except StoreFull:
            return done
    return len(ids)


def sizes(folder: Path) -> str:
    return ", ".join(f"{p.name} {p.stat().st_size / 2**20:.1f} MiB" for p in sorted(folder.iterdir()))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="an empty folder on a small filesystem of its own")
    parser.add_argument("--deletes", type=int, default=3000, help="records deleted on the full disk")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  log: %(message)s")
    store = SQLiteImageStore(args.folder / "doppel.sqlite3")
    try:
        stored = add_until_full(store, "a", batch=500)
        print(f"full after {stored:,} records: {sizes(args.folder)}")
        deleted = delete(store, [f"a{n}" for n in range(args.deletes)])
        print(f"deletes on the full disk: {deleted:,} of {args.deletes:,}: {sizes(args.folder)}")
        refilled = add_until_full(store, "b", batch=100)
        print(f"additions in the room the deletes freed: {refilled:,}: {sizes(args.folder)}")
        more = [f"a{n}" for n in range(args.deletes, 2 * args.deletes)]
        print(f"deletes after that: {delete(store, more):,} of {len(more):,}: {sizes(args.folder)}")
    finally:
        store.close()


if __name__ == "__main__":
    main()
