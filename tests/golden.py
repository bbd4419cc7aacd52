"""Golden hashes: the hashes Doppel gives known files, committed in tests/data/golden_hashes.tsv.

A stored hash must not move when Pillow, numpy or the BLAS under them is upgraded: old and new
copies of a picture would silently stop matching. tests/test_golden.py fails when any hash of
these files changes. The files are the shared photographs beside the repo (when present) and the
small committed files of tests/data/golden/, made once by `make_files` in every format Doppel
reads (its pixels come from numpy alone, so only decoding is under test).

After a deliberate change of the hashing (which needs a re-hash of existing stores), rewrite the
table with `python tests/golden.py` and say so in the commit.
"""

import csv
import io
import sys
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.imaging.hashing import hash_hex, hash_image_bytes  # noqa: E402

TESTS = Path(__file__).resolve().parent
FILES = TESTS / "data" / "golden"
TABLE = TESTS / "data" / "golden_hashes.tsv"
SHARED_IMAGES = TESTS.parents[1] / "shared" / "images"
SHARED_FOLDERS = ("dev", "large", "natural")
SHARED_PREFIX = "shared/"


@dataclass(frozen=True, slots=True)
class Golden:
    """One file's hashes, as the table holds them (hex, and the size as displayed)."""

    file: str  # "shared/dev/0002.jpg" or a name in tests/data/golden
    dhash: str
    vertical: str
    dct: str
    width: int
    height: int


def path_of(file: str) -> Path:
    if file.startswith(SHARED_PREFIX):
        return SHARED_IMAGES / file.removeprefix(SHARED_PREFIX)
    return FILES / file


def hashed(file: str) -> Golden:
    hashes = hash_image_bytes(path_of(file).read_bytes(), max_pixels=10**9)
    assert hashes.dhash_vertical is not None and hashes.dct_hash is not None
    return Golden(
        file,
        hash_hex(hashes.dhash),
        hash_hex(hashes.dhash_vertical),
        hash_hex(hashes.dct_hash),
        hashes.width,
        hashes.height,
    )


def read_table() -> list[Golden]:
    with TABLE.open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    return [
        Golden(r["file"], r["dhash"], r["vertical"], r["dct"], int(r["width"]), int(r["height"]))
        for r in rows
    ]


def files_to_hash() -> list[str]:
    files = sorted(path.name for path in FILES.iterdir())
    for folder in SHARED_FOLDERS:
        if (SHARED_IMAGES / folder).is_dir():
            files += sorted(
                f"{SHARED_PREFIX}{folder}/{path.name}"
                for path in (SHARED_IMAGES / folder).iterdir()
                if path.suffix.lower() not in {".tsv", ".md"} and "corrupt" not in path.name
            )
    return files


def pixels(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A picture of soft blocks and a gradient, from numpy alone (no resampling library)."""
    rng = np.random.default_rng(seed)
    width, height = size
    blocks = rng.integers(0, 256, size=(6, 8, 3)).astype(np.float64)
    rows = np.minimum(np.arange(height) * 6 // height, 5)
    cols = np.minimum(np.arange(width) * 8 // width, 7)
    image = blocks[rows][:, cols]
    image += np.linspace(-40, 40, width)[None, :, None]
    return np.clip(image, 0, 255).astype(np.uint8)


def make_files() -> dict[str, bytes]:
    """The committed files: one or more of every format and mode Doppel reads, with an EXIF
    orientation and a transparency among them."""
    rgb = Image.fromarray(pixels(1, (320, 240)), "RGB")
    saved: dict[str, bytes] = {}

    def save(name: str, image: Image.Image, fmt: str, **options: object) -> None:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        saved[name] = buffer.getvalue()

    save("rgb.png", rgb, "PNG")
    save("baseline.jpg", rgb, "JPEG", quality=85)
    save(
        "progressive.jpg",
        Image.fromarray(pixels(2, (1200, 900)), "RGB"),
        "JPEG",
        quality=80,
        progressive=True,
    )
    save("large.jpg", Image.fromarray(pixels(3, (1600, 1200)), "RGB"), "JPEG", quality=75)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: displayed 240x320
    save("orientation-6.jpg", rgb, "JPEG", quality=85, exif=exif)
    save("grey.png", rgb.convert("L"), "PNG")
    rgba = rgb.convert("RGBA")
    alpha = np.zeros((240, 320), dtype=np.uint8)
    alpha[40:200, 60:260] = 255
    rgba.putalpha(Image.fromarray(alpha, "L"))
    save("transparent.png", rgba, "PNG")
    save("palette.gif", rgb.quantize(64), "GIF")
    save("lossy.webp", rgb, "WEBP", quality=80)
    save("lossless.webp", rgba, "WEBP", lossless=True)
    small = Image.fromarray(pixels(4, (160, 120)), "RGB")
    save("rgb.bmp", small, "BMP")
    save("rgb.tiff", small, "TIFF", compression="tiff_lzw")
    return saved


def main() -> None:
    """Write the committed files (if missing) and the table of their hashes and the shared ones'."""
    FILES.mkdir(parents=True, exist_ok=True)
    for name, data in make_files().items():
        if not (FILES / name).exists():
            (FILES / name).write_bytes(data)
    rows = [hashed(file) for file in files_to_hash()]
    with TABLE.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["file", "dhash", "vertical", "dct", "width", "height"])
        writer.writerows(astuple(row) for row in rows)
    print(f"{len(rows)} files in {TABLE.relative_to(TESTS.parent)}")


if __name__ == "__main__":
    main()
