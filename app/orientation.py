"""The eight flips and quarter turns of an image, applied to its two hashes. Pure functions.

A dHash compares each pixel of the 9x8 image with its left neighbour; the vertical dHash compares
each pixel of the 8x9 image with the one above. Turning an image a quarter swaps the two, and a
mirror image reverses the order of the comparisons, so every variant comes from the two tiny
grey images already made for hashing (exactly), or from the two stored hashes alone (up to ties:
where two neighbours are equal, the reversed comparison should read 0 but reads 1).
"""

from dataclasses import dataclass

import numpy as np

from app.hashing import ImageHashes, horizontal_bits, pack_bits, vertical_bits
from app.models import Orientation


@dataclass(frozen=True, slots=True)
class _Undo:
    """The steps that turn a query back: transpose first, then mirror left-right, then up-down."""

    transpose: bool
    flip_lr: bool
    flip_ud: bool


_UNDO: dict[Orientation, _Undo] = {
    Orientation.ORIGINAL: _Undo(False, False, False),
    Orientation.FLIP_HORIZONTAL: _Undo(False, True, False),
    Orientation.FLIP_VERTICAL: _Undo(False, False, True),
    Orientation.ROTATE_180: _Undo(False, True, True),
    Orientation.ROTATE_90: _Undo(True, False, True),  # a quarter turn counter-clockwise
    Orientation.ROTATE_270: _Undo(True, True, False),  # a quarter turn clockwise
    Orientation.TRANSPOSE: _Undo(True, False, False),
    Orientation.TRANSVERSE: _Undo(True, True, True),
}


@dataclass(frozen=True, slots=True)
class HashPair:
    """A dHash and a vertical dHash (None where only the dHash is known)."""

    dhash: int
    vertical: int | None


def variants_of_image(hashes: ImageHashes) -> dict[Orientation, HashPair]:
    """The hashes of the image turned back from each orientation, from its tiny grey images."""
    result = {}
    for orientation, undo in _UNDO.items():
        wide, tall = (hashes.tall.T, hashes.wide.T) if undo.transpose else (hashes.wide, hashes.tall)
        if undo.flip_lr:
            wide, tall = wide[:, ::-1], tall[:, ::-1]
        if undo.flip_ud:
            wide, tall = wide[::-1, :], tall[::-1, :]
        result[orientation] = HashPair(horizontal_bits(wide), vertical_bits(tall))
    return result


def variants_of_hashes(dhash: int, vertical: int | None) -> dict[Orientation, HashPair]:
    """The same variants computed from the two hashes alone (exact but for ties, see above).

    Without the vertical hash only the four variants that keep the axes can be made.
    """
    result = {}
    for orientation, undo in _UNDO.items():
        if undo.transpose and vertical is None:
            continue
        across, down = _unpack(dhash), None if vertical is None else _unpack(vertical)
        if undo.transpose:
            across, down = down.T, across.T  # type: ignore[union-attr]
        if undo.flip_lr:
            # mirrored, each left-right comparison reverses; up-down ones just move
            across = ~across[:, ::-1]
            down = None if down is None else down[:, ::-1]
        if undo.flip_ud:
            across = across[::-1, :]
            down = None if down is None else ~down[::-1, :]
        result[orientation] = HashPair(pack_bits(across), None if down is None else pack_bits(down))
    return result


def _unpack(value: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(value.to_bytes(8, "big"), dtype=np.uint8)).reshape(8, 8).astype(bool)
