"""What thumbnails cost: the store's bytes per image with and without them, and the time an upload
spends hashing with and without making one.

The images of ../shared/images/<folder> (default dev) are hashed by the service's UploadHasher,
with thumbnails on and off, interleaved, --repeats times (median per image, summed), and written
to two SQLite stores through the store API. Printed: bytes per image on disk (every table and
index, from SQLite's dbstat, and the file), the thumbnails' own bytes, and the hashing time
with thumbnails as a ratio to the time without.

Run: python bench/thumbnails.py [--folder dev] [--repeats 3]
"""

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

from support import REPO, shared_images

sys.path.insert(0, str(REPO))
from app.image_index import ImageIndex  # noqa: E402
from app.imaging import HASHING_VERSION  # noqa: E402
from app.models import NewImage  # noqa: E402
from app.service.memory import DecodeMemory  # noqa: E402
from app.service.metrics import Metrics  # noqa: E402
from app.service.uploads import Upload, UploadHasher  # noqa: E402
from app.store import MemoryImageStore, SQLiteImageStore  # noqa: E402


def stored_bytes(path: Path) -> tuple[int, int]:
    """(bytes of every table and index, bytes of the thumbnails table) in the SQLite file."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    sizes = {str(name): int(size) for name, size in rows}
    return sum(sizes.values()), sizes.get("thumbnails", 0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--folder", default="dev", help="a folder of ../shared/images (default dev)")
    parser.add_argument("--repeats", type=int, default=3, help="hashes of each image per setting (default 3)")
    args = parser.parse_args()
    files = [path.read_bytes() for path in shared_images(args.folder)]
    metrics = Metrics(ImageIndex(), MemoryImageStore())
    hashers = {
        on: UploadHasher(
            max_pixels=100_000_000,
            max_concurrent_decodes=1,
            memory=DecodeMemory(2**40),  # unbounded: the benchmark times decodes one at a time
            hash_seconds=metrics.hash_seconds,
            decode_wait_seconds=metrics.decode_wait_seconds,
            thumbnails=on,
        )
        for on in (False, True)
    }
    seconds: dict[bool, list[float]] = {False: [], True: []}
    uploads: dict[bool, list[Upload]] = {False: [], True: []}
    for data in files:
        timings: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.repeats):
            for on, hasher in hashers.items():
                start = time.perf_counter()
                hasher.hash(data)
                timings[on].append(time.perf_counter() - start)
        for on, hasher in hashers.items():
            seconds[on].append(statistics.median(timings[on]))
            uploads[on].append(hasher.hash(data))
    with tempfile.TemporaryDirectory() as folder:
        mean_bytes = sum(map(len, files)) / len(files)
        print(f"{len(files)} images of ../shared/images/{args.folder}, {mean_bytes:,.0f} B each")
        for on in (False, True):
            path = Path(folder) / f"thumbnails-{on}.sqlite3"
            store = SQLiteImageStore(path)
            with store.writing() as write:
                write.add(
                    [
                        NewImage(
                            id=f"img-{n:04d}",
                            dhash=upload.hashes.dhash,
                            width=upload.hashes.width,
                            height=upload.hashes.height,
                            dhash_vertical=upload.hashes.dhash_vertical,
                            dct_hash=upload.hashes.dct_hash,
                            sha256=upload.sha256,
                            hashing_version=HASHING_VERSION,
                            thumbnail=upload.thumbnail,
                        )
                        for n, upload in enumerate(uploads[on])
                    ]
                )
            store.close()
            total, thumbnails = stored_bytes(path)
            n = len(files)
            label = "with thumbnails" if on else "without"
            print(
                f"  {label:<16} {total / n:>8,.0f} B per image in tables and indexes "
                f"(thumbnails {thumbnails / n:,.0f}), file {path.stat().st_size / n:,.0f} B per image; "
                f"hashing {sum(seconds[on]):.2f} s"
            )
        sides = [upload.thumbnail for upload in uploads[True] if upload.thumbnail]
        mean_side = statistics.mean(map(len, sides))
        print(f"  thumbnails made: {len(sides)} of {len(files)}, {mean_side:,.0f} B on average")
        print(f"  hashing with thumbnails: {sum(seconds[True]) / sum(seconds[False]):.2f}x the time without")


if __name__ == "__main__":
    main()
