"""Lanczos downscaling of a grey image to the tiny grids the hashes are read from.

Pillow's `resize((9, 8), LANCZOS)` walks every source pixel once per output column, in scalar
code: on a 16-megapixel photo the two resizes a hash needs cost more than 100 ms. Written as one
matrix product per pass (`grey @ weights`), the same weights run through BLAS for both grids at
once, about 8x faster; another grid (say the 32x32 of a DCT hash) rides the same pass for a
few more columns (`lanczos_grids`). The weights are Pillow's (Lanczos-3, support scaled by the shrink factor,
normalised, rounded to its 22-bit fixed point) and the first pass is rounded to 8 bits as Pillow
does, so the hashes match Pillow's on real photos. Float arithmetic can move a value by one where
Pillow's rounding sits on a tie, and Pillow resizes some tall images vertically first, which
can move a few values more where a high-contrast edge is clipped in between (2 of the 117 real
images in ../shared/images hash differently, by 1-5 bits, both tall cut-outs on transparency).
"""

from functools import lru_cache

import numpy as np

WIDE = (9, 8)  # (width, height) of the grid the horizontal dHash is read from
TALL = (8, 9)  # ... and of the grid of the vertical dHash
_PILLOW_PRECISION_BITS = 22  # Pillow's fixed-point weights (libImaging/Resample.c)
_LANCZOS_LOBES = 3
# Rows converted to float32 at a time: bounds the temporary copy (8 MiB at 4096 px wide).
_ROW_BLOCK = 512


def lanczos_grids(grey: np.ndarray, sizes: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    """The uint8 image (rows x cols) resized with Lanczos to each (width, height) of `sizes`, as
    uint8 arrays of height x width: one pass over the pixels for all of them.

    Horizontal pass first, rounded to 8 bits, then the vertical pass, as Pillow's two-pass resize.
    """
    height, width = grey.shape
    across = _across_weights(width, tuple(w for w, _ in sizes))
    rows = np.empty((height, across.shape[1]), dtype=np.float32)
    for start in range(0, height, _ROW_BLOCK):
        block = grey[start : start + _ROW_BLOCK].astype(np.float32)
        np.matmul(block, across, out=rows[start : start + _ROW_BLOCK])
    rows = _round8(rows)
    grids = []
    first = 0
    for out_width, out_height in sizes:
        grid = lanczos_weights(height, out_height).T @ rows[:, first : first + out_width]
        grids.append(_round8(grid).astype(np.uint8))
        first += out_width
    return grids


@lru_cache(maxsize=256)
def _across_weights(width: int, out_widths: tuple[int, ...]) -> np.ndarray:
    """The horizontal weights of every grid side by side, so one product serves them all."""
    return _read_only(np.concatenate([lanczos_weights(width, out) for out in out_widths], axis=1))


@lru_cache(maxsize=256)
def lanczos_weights(in_size: int, out_size: int) -> np.ndarray:
    """(in_size, out_size) float32 matrix whose column j weighs the source pixels of output pixel j.

    The arithmetic of Pillow's precompute_coeffs and normalize_coeffs_8bpc, for every column at once.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = _LANCZOS_LOBES * filter_scale
    centers = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centers - support + 0.5).astype(int), 0)  # int() truncates, as C's (int)
    end = np.minimum((centers + support + 0.5).astype(int), in_size)
    source = np.arange(in_size)[:, np.newaxis]
    x = (source - centers + 0.5) * (1.0 / filter_scale)
    inside = (source >= first) & (source < end) & (x >= -_LANCZOS_LOBES) & (x < _LANCZOS_LOBES)
    weights = np.where(inside, np.sinc(x) * np.sinc(x / _LANCZOS_LOBES), 0.0)
    totals = weights.sum(axis=0)
    weights = weights / np.where(totals == 0.0, 1.0, totals)
    one = float(1 << _PILLOW_PRECISION_BITS)
    fixed = np.trunc(weights * one + np.where(weights < 0, -0.5, 0.5))  # Pillow's rounding to fixed point
    return _read_only((fixed / one).astype(np.float32))


def _read_only(array: np.ndarray) -> np.ndarray:
    """Cached arrays are shared between threads: make sure nobody writes to them."""
    array.flags.writeable = False
    return array


def _round8(values: np.ndarray) -> np.ndarray:
    """Round half up and clip to 0..255, as Pillow stores each pass."""
    return np.clip(np.floor(values + 0.5), 0, 255)
