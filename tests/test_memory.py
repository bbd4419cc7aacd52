"""The server's memory under large decodes stays under the README's bound: its resident memory at
rest, plus DOPPEL_MAX_DECODE_MEMORY, plus the scratch buffers kept, plus the uploads held."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers import encode, make_photo
from live_server import LiveServer, has_proc, peak_rss_bytes, rss_bytes
from PIL import Image

from app.imaging.scratch import SCRATCH

BUDGET = 256 * 1024 * 1024
CLIENTS = 16


def flat_png(side: int) -> bytes:
    """A flat RGB PNG: a small file of many pixels (6000x6000: 110 KB, 216 MB decoded and hashed)."""
    return encode(Image.new("RGB", (side, side), (120, 80, 200)), "PNG")


def textured_webp(side: int) -> bytes:
    """A WebP with some texture, whose decoder takes 16 bytes a pixel."""
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return encode(Image.fromarray(noise).resize((side, side), Image.Resampling.BILINEAR), "WEBP")


@pytest.mark.skipif(not has_proc, reason="reads the server's peak memory from /proc (Linux)")
def test_peak_memory_stays_under_the_bound_with_16_clients_sending_large_images(tmp_path: Path) -> None:
    png, webp, too_large = flat_png(6000), textured_webp(3000), flat_png(7000)
    with (
        LiveServer(tmp_path, max_decode_memory=str(BUDGET)) as server,
        httpx.Client(base_url=server.url, timeout=600) as http,
    ):
        for fmt in ("PNG", "WEBP"):  # load the decoders before measuring memory at rest
            small = encode(make_photo(1, (64, 48)), fmt)
            assert http.post("/search", files={"file": ("f", small)}).status_code == 200
        at_rest = rss_bytes(server.pid)

        def search(data: bytes) -> int:
            with httpx.Client(base_url=server.url, timeout=600) as own:
                return own.post("/search", files={"file": ("f", data)}).status_code

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            statuses = list(pool.map(search, [png, webp] * CLIENTS))
        assert statuses == [200] * (2 * CLIENTS)
        bound = at_rest + BUDGET + SCRATCH.max_kept_bytes + CLIENTS * (len(png) + len(webp))
        peak = peak_rss_bytes(server.pid)
        print("XX", at_rest >> 20, peak >> 20, bound >> 20)
        assert peak <= bound, f"peak {peak / 2**20:.0f} MiB over the bound of {bound / 2**20:.0f} MiB"

        refused = http.post("/search", files={"file": ("f", too_large)})
        assert refused.status_code == 413
        assert "DOPPEL_MAX_DECODE_MEMORY" in refused.json()["detail"]
        # Freed memory goes back to the system: not a decode's worth held afterwards.
        assert rss_bytes(server.pid) < at_rest + SCRATCH.max_kept_bytes + BUDGET // 4
