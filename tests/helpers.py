"""Helpers for the tests: where the shared photos are, generated images, upload shortcuts."""

import io
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.imaging.hashing import as_displayed, orientation_to_apply, write_grey

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"
needs_shared = pytest.mark.skipif(
    not (SHARED_IMAGES / "dev").is_dir(),
    reason=f"real photographs not found at {SHARED_IMAGES} (the read-only shared/ folder beside the repo)",
)


def shared_files(folder: str) -> list[Path]:
    """Image files of a shared folder, sorted; TSV listings left out."""
    return sorted(p for p in (SHARED_IMAGES / folder).iterdir() if p.suffix != ".tsv")


def make_photo(seed: int, size: tuple[int, int] = (640, 480), mode: str = "RGB") -> Image.Image:
    """A photo-like image: smooth random shapes plus a little grain, different for every seed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse, "RGB").resize(size, Image.Resampling.BICUBIC)
    grain = rng.normal(0, 6, size=(size[1], size[0], 3))
    pixels = np.clip(np.asarray(image, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB").convert(mode)


def as_stored(created: dict[str, object]) -> dict[str, object]:
    """The record an answer to an upload describes, as GET /images/{id} answers it: without the
    upload's own `duplicates` and `flat`."""
    return {k: v for k, v in created.items() if k not in ("duplicates", "flat")}


def make_texture(seed: int) -> Image.Image:
    """A plain pale texture: grain of a few grey levels, one flat tone at a coarse scale."""
    grain = np.random.default_rng(seed).integers(216, 229, size=(480, 640, 3), dtype=np.uint8)
    return Image.fromarray(grain)


def grey_of(image: Image.Image) -> np.ndarray:
    """The grey pixels Doppel hashes an opened image from (decoded whole, as a viewer sees it)."""
    image.load()
    displayed = as_displayed(image, orientation_to_apply(image))
    grey = np.empty((displayed.height, displayed.width), dtype=np.uint8)
    write_grey(displayed, grey)
    return grey


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    """The image written to bytes in the given format."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# The transpose that undoes each EXIF orientation (the viewer applies its inverse).
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode_oriented(upright: Image.Image, orientation: int, fmt: str = "JPEG", **options: object) -> bytes:
    """An image (a JPEG unless `fmt` says otherwise) stored as a camera would: pixels turned so
    that applying its EXIF `orientation` (1-8) shows `upright`."""
    stored = upright.transpose(_UNDO_ORIENTATION[orientation]) if orientation > 1 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, fmt, exif=exif.tobytes(), **options)


def upload(
    client: TestClient,
    data: bytes,
    image_id: str | None = None,
    metadata: str | None = None,
    **params: object,
) -> httpx.Response:
    """POST /images with a file and the optional form fields."""
    form = {k: v for k, v in {"id": image_id, "metadata": metadata}.items() if v is not None}
    # Starlette types its TestClient against httpx2, which is not installed: to mypy its answers are
    # Any. At run time they are httpx's.
    response: httpx.Response = client.post(
        "/images", files={"file": ("image", data)}, data=form, params=params
    )
    return response


def search(client: TestClient, data: bytes, **params: object) -> httpx.Response:
    """POST /search with a file."""
    response: httpx.Response = client.post("/search", files={"file": ("image", data)}, params=params)
    return response
