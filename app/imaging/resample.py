"""Lanczos downscaling of a grey image to the tiny grids the hashes are read from.

Pillow's `resize((9, 8), LANCZOS)` walks every source pixel once per output column, in scalar
code: on a 16-megapixel photo the two resizes a hash needs cost more than 100 ms. Written as one
matrix product per pass (`grey @ weights`), the same weights run through BLAS for both grids at
once, about 8x faster; another grid (say the 32x32 of a DCT hash) rides the same pass for a
few more columns (`lanczos_grids`). The weights are Pillow's (Lanczos-3, support scaled by the shrink factor,
normalised, rounded to its 22-bit fixed point) and the first pass is rounded to 8 bits as Pillow
does, so the hashes match Pillow's on real photos. Float arithmetic can move a value by one where
Pillow's rounding sits on a tie (which way depends on OpenBLAS's kernel for the processor: with
its AVX kernels instead of the AVX-512 ones, 1 of 297 test files hashes a DCT bit apart, none of
the real photos), and Pillow resizes some tall images vertically first, which can move a few
values more where a high-contrast edge is clipped in between (2 of the 117 real images in
../shared/images hash differently, by 1-5 bits, both tall cut-outs on transparency).
"""

from functools import lru_cache

import numpy as np

from app.imaging.scratch import SCRATCH

WIDE = (9, 8)  # (width, height) of the grid the horizontal dHash is read from
TALL = (8, 9)  # ... and of the grid of the vertical dHash
_PILLOW_PRECISION_BITS = 22  # Pillow's fixed-point weights (libImaging/Resample.c)
_LANCZOS_LOBES = 3
# Rows of the image go through the first pass in blocks of at most this many bytes as float32.
_BLOCK_BYTES = 2 << 20
# Weights are cached for sides up to this: 128 sizes of at most 0.8 MB (the 49 columns of the
# three grids). They cost 0.3 ms for a side of 257 px, 3 ms for 4,096.
_CACHED_SIDE = 4096


def lanczos_grids(grey: np.ndarray, sizes: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    """The uint8 image (rows x cols) resized with Lanczos to each (width, height) of `sizes`, as
    float32 arrays of height x width: one pass over the pixels for all of them.

    Horizontal pass first, rounded to 8 bits, then the vertical pass, as Pillow's two-pass resize;
    the vertical pass is left unrounded (`rounded8` gives Pillow's 8-bit values).
    """
    height, width = grey.shape
    across = lanczos_weights(width, tuple(w for w, _ in sizes))
    block_rows = min(height, max(1, _BLOCK_BYTES // (4 * width)))
    with (
        SCRATCH.lend((height, across.shape[1]), np.float32) as rows,
        SCRATCH.lend((block_rows, width), np.float32) as block,
    ):
        for top in range(0, height, block_rows):
            pixels = grey[top : top + block_rows]
            np.copyto(block[: len(pixels)], pixels)
            np.matmul(block[: len(pixels)], across, out=rows[top : top + len(pixels)])
        return _vertical_pass(_round8(rows), sizes)


def _vertical_pass(rows: np.ndarray, sizes: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    """Each grid from the first pass (every grid's columns side by side), unrounded."""
    down = lanczos_weights(len(rows), tuple(h for _, h in sizes))
    grids = np.empty(sum(w * h for w, h in sizes), dtype=np.float32)
    products = []
    across = down_first = cell = 0
    for out_width, out_height in sizes:
        product = grids[cell : cell + out_width * out_height].reshape(out_height, out_width)
        # One product per grid, not one for all: that would sum in another order and move a
        # value sitting on a rounding tie (measured: 2 cells in 300 random images), changing hashes.
        weights = down[:, down_first : down_first + out_height]
        products.append(np.matmul(weights.T, rows[:, across : across + out_width], out=product))
        across += out_width
        down_first += out_height
        cell += out_width * out_height
    return products


def rounded8(grid: np.ndarray) -> np.ndarray:
    """A grid of lanczos_grids as Pillow stores it: rounded to 8 bits."""
    return _round8(grid.copy()).astype(np.uint8)


def lanczos_weights(in_size: int, out_sizes: tuple[int, ...]) -> np.ndarray:
    """(in_size, sum(out_sizes)) float32 matrix: for each output size in turn, one column per
    output pixel, weighing the source pixels of that output pixel. Side by side, so one product
    serves every grid. Cached for sides of up to _CACHED_SIDE pixels."""
    if in_size > _CACHED_SIDE:
        return _side_by_side(in_size, out_sizes)
    return _cached_side_by_side(in_size, out_sizes)


@lru_cache(maxsize=128)
def _cached_side_by_side(in_size: int, out_sizes: tuple[int, ...]) -> np.ndarray:
    return _read_only(_side_by_side(in_size, out_sizes))


def _side_by_side(in_size: int, out_sizes: tuple[int, ...]) -> np.ndarray:
    return np.concatenate([_weights(in_size, out_size) for out_size in out_sizes], axis=1)


def _weights(in_size: int, out_size: int) -> np.ndarray:
    """The arithmetic of Pillow's precompute_coeffs and normalize_coeffs_8bpc, for every output
    pixel at once, over the window of source pixels each one weighs (rows: place in the window)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = _LANCZOS_LOBES * filter_scale
    centers = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centers - support + 0.5).astype(int), 0)  # int() truncates, as C's (int)
    end = np.minimum((centers + support + 0.5).astype(int), in_size)
    source = first + np.arange(int((end - first).max()))[:, np.newaxis]
    x = (source - centers + 0.5) * (1.0 / filter_scale)
    inside = (source < end) & (x >= -_LANCZOS_LOBES) & (x < _LANCZOS_LOBES)
    weights = np.where(inside, np.sinc(x) * np.sinc(x / _LANCZOS_LOBES), 0.0)
    totals = weights.sum(axis=0)  # down each column, in source order: the sums of a dense matrix
    weights = weights / np.where(totals == 0.0, 1.0, totals)
    one = float(1 << _PILLOW_PRECISION_BITS)
    fixed = np.trunc(weights * one + np.where(weights < 0, -0.5, 0.5))  # Pillow's rounding to fixed point
    dense = np.zeros((in_size, out_size), dtype=np.float32)
    dense[source[inside], np.nonzero(inside)[1]] = (fixed[inside] / one).astype(np.float32)
    return dense


def _read_only(array: np.ndarray) -> np.ndarray:
    """Cached arrays are shared between threads: make sure nobody writes to them."""
    array.flags.writeable = False
    return array


def _round8(values: np.ndarray) -> np.ndarray:
    """Round half up and clip to 0..255 in place, as Pillow stores each pass."""
    np.add(values, 0.5, out=values)
    np.clip(values, 0, 255, out=values)  # before the floor: the same, as floor keeps 0 and 255
    np.floor(values, out=values)
    return values
