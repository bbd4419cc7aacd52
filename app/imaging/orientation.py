"""The eight flips and quarter turns of an image, applied to its hashes. Pure functions.

A dHash compares each pixel of the 9x8 image with its left neighbour; the vertical dHash compares
each pixel of the 8x9 image with the one above. Turning an image a quarter swaps the two, and a
mirror image reverses the order of the comparisons. A DCT coefficient changes sign under a mirror
when its frequency is odd, and a quarter turn transposes the coefficients. So every variant comes
from the tiny grey images and coefficients made for hashing (exactly), or from the stored hashes
alone, up to ties: for the dHashes where two neighbours are equal (the reversed comparison should
read 0 but reads 1), for the DCT hash where a coefficient is 0 (mirror-symmetric or flat images:
its bit stays 0 under a mirror, but the stored bit alone reads as flipped).
"""

from dataclasses import dataclass

import numpy as np

from app.imaging.hashing import (
    Grids,
    ImageHashes,
    Parts,
    Signature,
    dct_bits,
    horizontal_bits,
    pack_bits,
    vertical_bits,
)
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
# Coefficients of odd frequency change sign when the image is mirrored along their axis.
_ODD = np.arange(8) % 2 == 1
_SIGN = np.where(_ODD, -1.0, 1.0)


def variants_of_image(hashes: ImageHashes) -> dict[Orientation, Parts]:
    """The hashes of the image turned back from each orientation, ORIGINAL first. The windows are
    placed symmetrically, so each turned window is a window of the turned image."""
    return {
        orientation: Parts(
            _turned(hashes.whole, undo),
            _turned(hashes.centre, undo),
            tuple(_turned(window, undo) for window in hashes.windows),
            tuple(_turned(alternative, undo) for alternative in hashes.alternatives),
        )
        for orientation, undo in _UNDO.items()
    }


def variants_of_stored(
    whole: Signature, centre: Signature | None, cuts: tuple[Signature, ...] = ()
) -> dict[Orientation, Parts]:
    """The variants of a stored image's hashes (`variants_of_hashes`, for the whole, the centre and
    the other cuts)."""
    centres = {} if centre is None else variants_of_hashes(centre.dhash, centre.vertical, centre.dct)
    turned_cuts = [variants_of_hashes(cut.dhash, cut.vertical, cut.dct) for cut in cuts]
    return {
        orientation: Parts(
            signature,
            centres.get(orientation),
            alternatives=tuple(turned[orientation] for turned in turned_cuts if orientation in turned),
        )
        for orientation, signature in variants_of_hashes(whole.dhash, whole.vertical, whole.dct).items()
    }


def _turned(grids: Grids, undo: _Undo) -> Signature:
    wide, tall, dct = grids.wide, grids.tall, grids.dct_low
    if undo.transpose:
        wide, tall, dct = tall.T, wide.T, dct.T
    if undo.flip_lr:
        wide, tall, dct = wide[:, ::-1], tall[:, ::-1], dct * _SIGN[np.newaxis, :]
    if undo.flip_ud:
        wide, tall, dct = wide[::-1, :], tall[::-1, :], dct * _SIGN[:, np.newaxis]
    return Signature(horizontal_bits(wide), vertical_bits(tall), dct_bits(dct))


def variants_of_hashes(dhash: int, vertical: int | None, dct: int | None) -> dict[Orientation, Signature]:
    """The same variants computed from the hashes alone, ORIGINAL first.

    Without the vertical dHash only the four variants that keep the axes can be made.
    """
    result = {}
    for orientation, undo in _UNDO.items():
        across = _unpack(dhash)
        down = None if vertical is None else _unpack(vertical)
        signs = None if dct is None else _unpack(dct)
        if undo.transpose:
            if down is None:  # a quarter turn swaps the two dHashes: it needs the vertical one
                continue
            across, down = down.T, across.T
            signs = None if signs is None else signs.T
        if undo.flip_lr:
            # mirrored, each left-right comparison reverses; up-down ones just move
            across = ~across[:, ::-1]
            down = None if down is None else down[:, ::-1]
            signs = None if signs is None else signs ^ _ODD[np.newaxis, :]
        if undo.flip_ud:
            across = across[::-1, :]
            down = None if down is None else ~down[::-1, :]
            signs = None if signs is None else signs ^ _ODD[:, np.newaxis]
        result[orientation] = Signature(pack_bits(across), _pack_or_none(down), _pack_or_none(signs))
    return result


def _unpack(value: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(value.to_bytes(8, "big"), dtype=np.uint8)).reshape(8, 8).astype(bool)


def _pack_or_none(bits: np.ndarray | None) -> int | None:
    return None if bits is None else pack_bits(bits)
