"""HTTP throughput: POST /search on Doppel vs the naive service, 4 concurrent clients.

Both services run side by side (bench/naive_service.py is started here too), each with 1,000
stored hashes. Rounds alternate naive, Doppel, naive, ...; in each, 4 client threads send the
images of the set in turn. Figures are the median requests per second over the rounds.
Targets (issue 3): >= 1.8x the naive rate on the large photos, >= 1x on images of <= 1024 px
(all of them, and the opaque ones, which both services hash the same way).

Run: python bench/http_throughput.py [--rounds 5]
"""

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from support import Server, doppel, run_threads, shared_images

CLIENTS = 4
STORED = 1000
SMALL_SIDE = 1024


def workloads() -> dict[str, list[bytes]]:
    small = [p for p in shared_images("dev") if max(Image.open(p).size) <= SMALL_SIDE]
    return {
        "large photos (3-20 MP)": [p.read_bytes() for p in shared_images("large")],
        f"ordinary images (<= {SMALL_SIDE} px)": [p.read_bytes() for p in small],
        # Doppel flattens transparency onto white, work the naive service skips (it hashes the
        # hidden pixels): on the opaque images both do the same work.
        "  of which opaque": [p.read_bytes() for p in small if not has_alpha(p)],
    }


def has_alpha(path: Path) -> bool:
    with Image.open(path) as image:
        return "A" in image.mode or "transparency" in image.info


def seed_doppel(url: str) -> None:
    hashes = np.random.default_rng(0).integers(0, 1 << 64, STORED, dtype=np.uint64)
    items = [{"id": f"seed-{n}", "hash": f"{int(h):016x}"} for n, h in enumerate(hashes)]
    httpx.post(url + "/images/batch", json={"items": items}, timeout=60).raise_for_status()


def search_all(url: str, images: list[bytes], requests: int) -> tuple[float, list[str]]:
    """Requests per second with CLIENTS threads sending `requests` searches; and the hash of
    each image (from its first request)."""
    turns = itertools.count()  # next() on a count is atomic under the GIL
    hashes: list[str] = [""] * len(images)
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            while (turn := next(turns)) < requests:
                n = turn % len(images)
                response = http.post("/search", files={"file": ("image", images[n])})
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    return
                hashes[n] = response.json()["hash"]

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    elapsed = run_threads(threads)
    if failures:
        sys.exit(f"{url}: {failures[0]}")
    return requests / elapsed, hashes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per service and workload (default 5)")
    args = parser.parse_args()
    sets = workloads()
    with (
        tempfile.TemporaryDirectory() as data_dir,
        doppel(Path(data_dir)) as ours,
        Server([sys.executable, "bench/naive_service.py", "{port}", str(STORED)]) as naive,
    ):
        ours.wait_ready()
        naive.wait_ready()
        seed_doppel(ours.url)
        print(
            f"Doppel {ours.url} and the naive service {naive.url}, "
            f"{STORED} stored hashes each, {CLIENTS} clients"
        )
        print(f"{'workload':32} {'naive req/s':>12} {'Doppel req/s':>13} {'ratio':>6}  per-round ratios")
        for name, images in sets.items():
            requests = len(images) * (4 if len(images) < 50 else 2)
            search_all(naive.url, images, len(images))  # warm-up: every image once
            _, ours_hashes = search_all(ours.url, images, len(images))
            _, naive_hashes = search_all(naive.url, images, len(images))
            rates: dict[str, list[float]] = {"naive": [], "doppel": []}
            for _ in range(args.rounds):
                rates["naive"].append(search_all(naive.url, images, requests)[0])
                rates["doppel"].append(search_all(ours.url, images, requests)[0])
            naive_rate, ours_rate = statistics.median(rates["naive"]), statistics.median(rates["doppel"])
            per_round = " ".join(f"{d / n:.2f}" for n, d in zip(rates["naive"], rates["doppel"], strict=True))
            print(
                f"{name:32} {naive_rate:12.2f} {ours_rate:13.2f} {ours_rate / naive_rate:5.2f}x  {per_round}"
            )
            distances = [
                bin(int(a, 16) ^ int(b, 16)).count("1")
                for a, b in zip(ours_hashes, naive_hashes, strict=True)
            ]
            print(
                f"{'':32} {len(images)} images, {requests} requests a round; "
                f"Doppel's hash = the naive one for {distances.count(0)}, max {max(distances)} bits apart "
                "(Doppel flattens transparency, applies EXIF)"
            )
        print(
            f"resident memory after the runs: Doppel {ours.rss_bytes() / 2**20:.0f} MiB, "
            f"naive {naive.rss_bytes() / 2**20:.0f} MiB"
        )


if __name__ == "__main__":
    main()
