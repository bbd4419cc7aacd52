"""Peak memory of the real server under large decodes (issue 17): 16 clients searching with a
16.8-megapixel WebP, then with a flat 10000x10000 PNG (316 KB), for several settings, against the
code at a reference commit (the code before the decode budget) run the same way in the same run.

    python bench/memory.py --reference f897d9c     # the settings of the issue, before and after
    python bench/memory.py --costs                 # bytes a pixel that each format and mode takes

For each server: resident memory at rest (after one small image of each format), the peak (VmHWM)
after the WebP and after both, and what it still holds after each. Linux only (reads /proc).
"""

import argparse
import io
import subprocess
import sys
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from support import REPO, Server, checkout, doppel_of, stop_on_sigterm

CLIENTS = 16
MIB = 2**20
# (label, settings) for the code under test; the reference runs the decode counts.
SETTINGS = [
    ("decodes 1", {"max_concurrent_decodes": "1"}),
    ("decodes 4", {"max_concurrent_decodes": "4"}),
    ("decodes 16", {"max_concurrent_decodes": "16"}),
    ("decodes 16, budget 1 GiB", {"max_concurrent_decodes": "16", "max_decode_memory": str(2**30)}),
]
REFERENCE_SETTINGS = SETTINGS[:2]


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def flat_png() -> bytes:
    return encoded(Image.new("RGB", (10_000, 10_000), (120, 80, 200)), "PNG")


def photo_webp() -> bytes:
    """4096x4096 (16.8 MP) with some texture."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return encoded(Image.fromarray(noise).resize((4096, 4096), Image.Resampling.BILINEAR), "WEBP", quality=80)


def load(server: Server, data: bytes, requests: int) -> dict[int, int]:
    """`requests` searches with `data` from CLIENTS threads; the count of each status."""
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(count: int) -> None:
        with httpx.Client(base_url=server.url, timeout=3600) as http:
            for _ in range(count):
                status = http.post("/search", files={"file": ("f", data)}).status_code
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

    threads = [
        threading.Thread(target=client, args=(requests // CLIENTS + (n < requests % CLIENTS),))
        for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def measure(
    label: str, tree: Path, settings: dict[str, str], png: bytes, webp: bytes, args: argparse.Namespace
) -> None:
    with tempfile.TemporaryDirectory() as data_dir, doppel_of(tree, Path(data_dir), settings) as server:
        server.wait_ready()
        small = Image.new("RGB", (64, 48), (10, 20, 30))
        for fmt in ("PNG", "WEBP"):
            httpx.post(server.url + "/search", files={"file": ("f", encoded(small, fmt))}, timeout=60)
        rest = server.rss_bytes()
        # The WebP first: the peak (VmHWM) only grows, and the PNG's is the higher.
        webp_statuses = load(server, webp, args.webp_requests)
        webp_peak, webp_after = server.peak_rss_bytes(), server.rss_bytes()
        png_statuses = load(server, png, args.png_requests)
        peak, after = server.peak_rss_bytes(), server.rss_bytes()
    print(
        f"| {label} | {rest / MIB:.0f} | {webp_peak / MIB:,.0f} | {webp_after / MIB:,.0f} "
        f"| {peak / MIB:,.0f} | {after / MIB:,.0f} "
        f"| {fmt_statuses(webp_statuses)}; {fmt_statuses(png_statuses)} |",
        flush=True,
    )


def fmt_statuses(statuses: dict[int, int]) -> str:
    return ", ".join(f"{count}x{status}" for status, count in sorted(statuses.items()))


def costs() -> None:
    """Peak bytes a pixel of one hash, by format and mode, each in a fresh process with the
    server's allocator settings (glibc: large blocks unmapped when freed)."""
    cases = [
        ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"), ("PNG", "LA"), ("PNG", "P"), ("PNG", "I;16"),
        ("WEBP", "RGB"), ("WEBP", "RGBA"), ("JPEG", "RGB"), ("JPEG", "CMYK"), ("GIF", "P"),
        ("BMP", "RGB"), ("TIFF", "RGB"), ("TIFF", "CMYK"), ("TIFF", "F"), ("HEIF", "RGB"), ("AVIF", "RGB"),
    ]  # fmt: skip
    print("| format | mode | bytes a pixel, measured | budgeted (decode_cost) |\n|---|---|---|---|")
    for fmt, mode in cases:
        for progressive in (False, True) if fmt == "JPEG" else (False,):
            result = subprocess.run(
                [sys.executable, "-c", COST_PROBE, fmt, mode, str(progressive)],
                cwd=REPO, capture_output=True, text=True, check=True,
            )  # fmt: skip
            print(f"| {fmt}{' progressive' if progressive else ''} | {mode} | {result.stdout.strip()} |")


COST_PROBE = """
import io, sys
from app.service.memory import return_freed_memory
return_freed_memory()
import numpy as np
from PIL import Image
from app.imaging.hashing import decode_cost, hash_image_bytes, open_image
fmt, mode, progressive = sys.argv[1], sys.argv[2], sys.argv[3] == "True"
side = 4000
noise = np.random.default_rng(0).integers(0, 256, (64, 64, 4), dtype=np.uint8)
image = Image.fromarray(noise, "RGBA").resize((side, side), Image.Resampling.BILINEAR).convert(mode)
buffer = io.BytesIO()
image.save(buffer, fmt, **({"progressive": True} if progressive else {}))
data = buffer.getvalue()
del image, buffer
def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # resets VmHWM to the present
before = kib("VmRSS")
hash_image_bytes(data, max_pixels=10**9)
print(f"{(kib('VmHWM') - before) / side**2:.1f} | {decode_cost(open_image(data)) / side**2:.1f}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", metavar="REF", help="also run the code at this commit, as it was")
    parser.add_argument("--png-requests", type=int, default=16, help="searches with the PNG (default 16)")
    parser.add_argument("--webp-requests", type=int, default=64, help="searches with the WebP (default 64)")
    parser.add_argument("--costs", action="store_true", help="print the bytes a pixel by format instead")
    args = parser.parse_args()
    stop_on_sigterm()
    if args.costs:
        costs()
        return
    png, webp = flat_png(), photo_webp()
    print(
        f"{CLIENTS} clients: {args.webp_requests} searches with a {len(webp) / 1000:.0f} KB 4096x4096 "
        f"WebP, then {args.png_requests} with a {len(png) / 1000:.0f} KB flat 10000x10000 PNG; "
        "resident memory in MiB\n"
    )
    print("| code, settings | at rest | peak, WebP | after WebP | peak, both | after both | statuses |")
    print("|---|---|---|---|---|---|---|")
    with ExitStack() as stack:
        if args.reference:
            reference = stack.enter_context(checkout(args.reference))
            for label, settings in REFERENCE_SETTINGS:
                measure(f"{args.reference}, {label}", reference, settings, png, webp, args)
        for label, settings in SETTINGS:
            measure(f"this, {label}", REPO, settings, png, webp, args)


if __name__ == "__main__":
    main()
