"""The cost of hashing and indexing each picture's parts (HASHING_VERSION 6), against the whole
picture alone, measured side by side in one run.

1. Hashing: `hash_image_bytes` (whole, centre, five windows and, where they differ, the unpadded,
   inset and cornered cuts) against the whole picture's grids alone from the same grey image, per file of
   shared/images dev/ and large/, medians of --repeats, in turns.
2. Search: `ImageIndex.search` as a default search makes it (the whole picture's dHash and DCT
   hash against the whole pictures' and cuts', and the centre and the five windows against the
   centres) against the whole dHash alone (confirm=false, or before), at radius 10 over --size
   random images, each with a centre and a DCT hash, a share of them (--cut-share) with another
   cut (dev/'s graphics have 0.7 a picture, the photos of large/ and natural/ 1 in 21); p50 and
   p99 of --queries queries with a planted neighbour.
3. Memory: the entries of the five indexes per image against those of the whole pictures' alone,
   and the resident memory they add per image once their tables are built.

Run: python bench/parts.py [--size 1000000] [--queries 2000] [--repeats 5] [--cut-share 0.5]
"""

import argparse
import statistics
import sys
import time

import numpy as np
from support import REPO, shared_images, status_bytes

sys.path.insert(0, str(REPO))
from app.image_index import ImageIndex  # noqa: E402
from app.imaging.borders import content_box  # noqa: E402
from app.imaging.hashing import (  # noqa: E402
    as_displayed,
    decode_for_hashing,
    grids_of,
    hash_image_bytes,
    lent_grey,
    open_image,
    orientation_to_apply,
)
from app.store.base import StoredHashes  # noqa: E402

RADIUS = 10
MAX_PIXELS = 10**9


def whole_only(data: bytes) -> None:
    """The hash as it was before the centres: decode, grey, trim, the whole picture's grids."""
    image = open_image(data)
    decoded = decode_for_hashing(image, data)
    displayed = as_displayed(decoded, orientation_to_apply(decoded))
    with lent_grey(displayed) as grey:
        top, bottom, left, right = content_box(grey)
        grids_of(grey[top:bottom, left:right])


def hashing(repeats: int) -> None:
    files = [p for folder in ("dev", "large") for p in shared_images(folder)]
    now, before = [], []
    for path in files:
        data = path.read_bytes()
        a, b = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            hash_image_bytes(data, max_pixels=MAX_PIXELS)
            middle = time.perf_counter()
            whole_only(data)
            a.append(middle - start)
            b.append(time.perf_counter() - middle)
        now.append(statistics.median(a))
        before.append(statistics.median(b))
    ratios = [n / b for n, b in zip(now, before, strict=True)]
    print(
        f"1. hashing, {len(files)} files: total {sum(now):.2f} s with the centre and windows, "
        f"{sum(before):.2f} s the whole alone = {sum(now) / sum(before):.2f}x; per file median "
        f"{statistics.median(ratios):.2f}x, max {max(ratios):.2f}x"
    )


def search(size: int, queries: int, cut_share: float) -> None:
    rng = np.random.default_rng(7)
    keys = np.arange(1, size + 1, dtype=np.int64)
    wholes = rng.integers(0, 1 << 63, size, dtype=np.uint64) * np.uint64(2)
    centres = rng.integers(0, 1 << 63, size, dtype=np.uint64) * np.uint64(2)
    dcts = rng.integers(0, 1 << 63, size, dtype=np.uint64) * np.uint64(2)
    cut_keys = keys[: round(size * cut_share)]
    cuts = rng.integers(0, 1 << 63, (2, len(cut_keys)), dtype=np.uint64) * np.uint64(2)
    before = status_bytes("VmRSS")
    index = ImageIndex()
    index.add(StoredHashes(keys, wholes, keys, centres, keys, dcts, cut_keys, cuts[0], cuts[1]))
    indexes = (index.whole, index.dct, index.centre, index.cut, index.cut_dct)
    for one in indexes:  # timed once every table is built, as in a replica that has run a while
        one._settle()
    resident = (status_bytes("VmRSS") - before) / size
    picked = rng.integers(0, size, queries)
    flips = [sum(1 << int(b) for b in rng.choice(64, 3, replace=False)) for _ in range(queries)]
    full: list[float] = []
    alone: list[float] = []
    for n, (i, flip) in enumerate(zip(picked, flips, strict=True)):
        whole, dct = int(wholes[i]) ^ flip, int(dcts[i]) ^ flip
        parts = [int(centres[i]) ^ flip, *(int(v) for v in rng.integers(0, 1 << 63, 5, dtype=np.uint64))]
        for with_parts in (True, False) if n % 2 else (False, True):
            start = time.perf_counter()
            if with_parts:
                index.search([whole], [dct], parts, max_distance=RADIUS)
            else:
                index.whole.search([whole], max_distance=RADIUS)
            (full if with_parts else alone).append(time.perf_counter() - start)
    p50 = [float(np.percentile(t, 50)) * 1000 for t in (full, alone)]
    p99 = [float(np.percentile(t, 99)) * 1000 for t in (full, alone)]
    print(
        f"2. search at {size:,} images, radius {RADIUS}: whole + DCT + centre + 5 windows "
        f"p50 {p50[0]:.3f} ms, p99 {p99[0]:.3f} ms; whole alone p50 {p50[1]:.3f} ms, p99 {p99[1]:.3f} ms = "
        f"{p50[0] / p50[1]:.2f}x at p50"
    )
    entries = [len(i) for i in indexes]
    print(
        f"3. memory: {sum(entries) / size:.1f} entries an image instead of 1 "
        f"({' + '.join(f'{n:,}' for n in entries)}); the index's resident growth {resident:.1f} B an image"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cut-share", type=float, default=0.5, help="cuts an image (0-1)")
    args = parser.parse_args()
    hashing(args.repeats)
    search(args.size, args.queries, args.cut_share)


if __name__ == "__main__":
    main()
