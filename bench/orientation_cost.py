"""What all_orientations costs: a plain search vs one over all eight orientations, in-process.

    python bench/orientation_cost.py [--stored 100000] [--rounds 5]

Indexes --stored random hashes plus the shared dev photos, then times `Matching.search` on each
dev photo (decode + hash + index + confirm), plain and with all_orientations, interleaved, and
prints the medians and their ratio. Needs ../shared/images/dev beside the repository.
"""

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.config import Settings  # noqa: E402
from app.imaging import HASHING_VERSION  # noqa: E402
from app.models import NewImage  # noqa: E402
from app.service import build_service  # noqa: E402
from app.service.matching import SearchOptions, query_of_upload  # noqa: E402
from app.store import MemoryImageStore  # noqa: E402

DEV = ROOT.parent / "shared" / "images" / "dev"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not DEV.is_dir():
        sys.exit(f"needs the shared photos at {DEV}")
    settings = Settings(max_distance=10, max_pixels=10**9, max_concurrent_decodes=1)
    service = build_service(settings, store=MemoryImageStore())
    rng = random.Random(1)
    with service.store.writing() as write:
        write.add(
            [
                NewImage(
                    id=f"r{n}", dhash=rng.getrandbits(64), width=1, height=1, hashing_version=HASHING_VERSION
                )
                for n in range(args.stored)
            ]
        )
    service.start()  # the index loads the stored hashes
    try:
        photos = [p.read_bytes() for p in sorted(DEV.iterdir()) if p.suffix != ".tsv"]
        for data in photos:
            service.ingest.add(data, image_id=None, metadata={})
        matching = service.matching
        modes = {"plain": SearchOptions(), "all_orientations": SearchOptions(all_orientations=True)}
        whole: dict[str, list[float]] = {label: [] for label in modes}
        lookup: dict[str, list[float]] = {label: [] for label in modes}
        for _ in range(args.rounds):
            for data in photos:
                query = query_of_upload(matching.hasher.hash(data))
                for label, options in modes.items():
                    start = time.perf_counter()
                    matching.search(data, options=options)
                    whole[label].append(time.perf_counter() - start)
                    start = time.perf_counter()
                    matching.find(query, options)
                    lookup[label].append(time.perf_counter() - start)
        stored = service.count()
    finally:
        service.close()
    print(f"{stored} stored, {len(photos)} dev photos x {args.rounds} rounds, medians:")
    for name, timings in (("decode + hash + search", whole), ("index search + confirm only", lookup)):
        plain, turned = (statistics.median(timings[label]) * 1000 for label in modes)
        print(
            f"  {name}: plain {plain:.2f} ms, all_orientations {turned:.2f} ms, ratio {turned / plain:.2f}x"
        )


if __name__ == "__main__":
    main()
