"""app.imaging.jpeg_dc: a progressive JPEG without its AC scans decodes at 1/8 scale exactly as
the whole file."""

import io
import random

import numpy as np
import pytest
from helpers import encode, grey_of, make_photo, needs_shared, shared_files
from PIL import Image

from app.errors import DoppelError
from app.imaging.hashing import JPEG_DRAFT_SIDE, hash_image_bytes, open_image
from app.imaging.jpeg_dc import dc_scans_only

LIMIT = 100_000_000


def eighth_scale_grey(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.draft("L", (JPEG_DRAFT_SIDE, JPEG_DRAFT_SIDE))
        return np.asarray(image.convert("L"))


def progressive(size: tuple[int, int] = (1600, 1200), /, mode: str = "RGB", **options: object) -> bytes:
    return encode(make_photo(11, size, mode), "JPEG", quality=90, progressive=True, **options)


@pytest.mark.parametrize(
    ("mode", "options"),
    [
        ("RGB", {}),
        ("RGB", {"subsampling": 0}),
        ("RGB", {"subsampling": 1}),
        ("L", {}),
        ("RGB", {"optimize": True}),
    ],
)
def test_dc_scans_decode_like_the_whole_file(mode: str, options: dict[str, object]) -> None:
    data = progressive(mode=mode, **options)
    reduced = dc_scans_only(data)
    assert reduced is not None and len(reduced) < len(data) / 2
    assert np.array_equal(eighth_scale_grey(reduced), eighth_scale_grey(data))


def test_exif_survives_so_orientation_is_still_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = progressive(exif=exif.tobytes())
    reduced = dc_scans_only(data)
    assert reduced is not None
    assert Image.open(io.BytesIO(reduced)).getexif().get(0x0112) == 6
    assert hash_image_bytes(data, max_pixels=LIMIT).width == 1200


def test_hash_of_a_large_progressive_jpeg_is_that_of_its_full_decode() -> None:
    data = progressive((2400, 1800))
    whole = open_image(data)
    whole.draft("L", (JPEG_DRAFT_SIDE, JPEG_DRAFT_SIDE))  # the same scale, from every scan
    expected = hash_image_bytes(encode(Image.fromarray(grey_of(whole)), "PNG"), max_pixels=LIMIT)
    assert dc_scans_only(data) is not None
    assert hash_image_bytes(data, max_pixels=LIMIT).dhash == expected.dhash


@pytest.mark.parametrize(
    "data",
    [
        encode(make_photo(1, (1600, 1200)), "JPEG"),  # baseline: AC and DC share one scan
        progressive(restart_marker_blocks=4),  # restart intervals split the scans
        progressive()[:-2],  # no end-of-image marker: truncated
        progressive()[: len(progressive()) // 2],
        b"\xff\xd8",
        b"\xff\xd8\xff\xda\x00",
        encode(make_photo(1), "PNG"),
        b"",
    ],
    ids=["baseline", "restart-intervals", "no-eoi", "half", "soi-only", "short-scan", "png", "empty"],
)
def test_files_it_does_not_handle_are_left_alone(data: bytes) -> None:
    assert dc_scans_only(data) is None


def test_a_truncated_progressive_jpeg_is_still_refused() -> None:
    data = progressive((2400, 1800))
    with pytest.raises(DoppelError):
        hash_image_bytes(data[: len(data) * 2 // 3], max_pixels=LIMIT)


def test_damaged_bytes_never_raise_anything_but_domain_errors() -> None:
    data = progressive((1200, 1100))
    rng = random.Random(5)
    for _ in range(60):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            damaged[rng.randrange(2, len(damaged))] = rng.randrange(256)
        damaged_bytes = bytes(damaged)
        reduced = dc_scans_only(damaged_bytes)
        assert reduced is None or reduced.startswith(b"\xff\xd8")
        try:
            hash_image_bytes(damaged_bytes, max_pixels=LIMIT)
        except DoppelError:
            pass


@needs_shared
def test_real_progressive_photos_decode_identically() -> None:
    checked = 0
    for path in shared_files("large") + shared_files("dev"):
        data = path.read_bytes()
        with Image.open(path) as image:
            if image.format != "JPEG" or min(image.size) < 8 * JPEG_DRAFT_SIDE:
                continue
        reduced = dc_scans_only(data)
        if reduced is None:
            continue
        assert np.array_equal(eighth_scale_grey(reduced), eighth_scale_grey(data)), path.name
        checked += 1
    assert checked >= 8
