"""app.imaging.resample: Pillow's Lanczos resize to the hash grids, as matrix products."""

import numpy as np
import pytest
from helpers import grey_of, make_photo, needs_shared, shared_files
from PIL import Image

from app.imaging.hashing import horizontal_bits, open_image, vertical_bits
from app.imaging.resample import TALL, WIDE, lanczos_grids, lanczos_weights, rounded8


def pillow_grids(grey: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.asarray(grey.resize(WIDE, Image.Resampling.LANCZOS)),
        np.asarray(grey.resize(TALL, Image.Resampling.LANCZOS)),
    )


@pytest.mark.parametrize(
    "size", [(640, 480), (1203, 907), (333, 777), (9, 8), (20, 15), (3, 2), (1, 1), (4000, 3)]
)
def test_grids_are_pillows_within_one_level(size: tuple[int, int]) -> None:
    grey = make_photo(2, size).convert("L")
    wide, tall = map(rounded8, lanczos_grids(np.asarray(grey), (WIDE, TALL)))
    expected_wide, expected_tall = pillow_grids(grey)
    assert wide.shape == (8, 9) and tall.shape == (9, 8)
    assert wide.dtype == np.uint8 and tall.dtype == np.uint8
    assert np.abs(wide.astype(int) - expected_wide).max() <= 1
    assert np.abs(tall.astype(int) - expected_tall).max() <= 1


@needs_shared
def test_real_images_mostly_hash_as_with_pillows_resize() -> None:
    # Pillow rounds its first pass to 8 bits and, for some tall images, resizes vertically
    # first; where a high-contrast edge is clipped in that pass, a few bits can differ.
    files = shared_files("dev") + shared_files("large")
    same = 0
    for path in files:
        grey = Image.fromarray(grey_of(open_image(path.read_bytes())))
        wide, tall = map(rounded8, lanczos_grids(np.asarray(grey), (WIDE, TALL)))
        expected_wide, expected_tall = pillow_grids(grey)
        same += horizontal_bits(wide) == horizontal_bits(expected_wide)
        same += vertical_bits(tall) == vertical_bits(expected_tall)
    assert same / (2 * len(files)) >= 0.95


@pytest.mark.parametrize(("in_size", "out_size"), [(5312, 9), (100, 8), (9, 9), (2, 9), (70_000, 32)])
def test_each_output_pixel_weights_sum_to_one(in_size: int, out_size: int) -> None:
    weights = lanczos_weights(in_size, (out_size,))
    assert weights.shape == (in_size, out_size)
    assert np.allclose(weights.sum(axis=0), 1.0, atol=1e-5)


def test_weights_of_every_grid_side_by_side_and_cached_read_only() -> None:
    weights = lanczos_weights(1000, (9, 8, 32))
    assert weights.shape == (1000, 49)
    assert np.array_equal(weights[:, 9:17], lanczos_weights(1000, (8,)))
    assert lanczos_weights(1000, (9, 8, 32)) is weights  # cached and shared between threads,
    assert not weights.flags.writeable  # so nobody may write to it


def test_other_grids_ride_the_same_pass() -> None:
    grey = make_photo(3, (1200, 900)).convert("L")
    wide, square, tall = lanczos_grids(np.asarray(grey), (WIDE, (32, 32), TALL))
    assert np.array_equal(wide, lanczos_grids(np.asarray(grey), (WIDE, TALL))[0]) and tall.shape == (9, 8)
    expected = np.asarray(grey.resize((32, 32), Image.Resampling.LANCZOS))
    assert square.shape == (32, 32) and np.abs(square.astype(int) - expected).max() <= 1
