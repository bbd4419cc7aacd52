"""app.imaging.orientation: hashes of flipped and turned images, from pixels and from stored hashes."""

import pytest
from helpers import encode, make_photo
from PIL import Image

from app.imaging.hashing import WINDOWS, ImageHashes, hamming, hash_image_bytes
from app.imaging.orientation import variants_of_hashes, variants_of_image, variants_of_stored
from app.models import Orientation

T = Image.Transpose
# How to turn a stored image into a query that has each orientation (PIL turns counter-clockwise).
TURN = {
    Orientation.ORIGINAL: None,
    Orientation.FLIP_HORIZONTAL: T.FLIP_LEFT_RIGHT,
    Orientation.FLIP_VERTICAL: T.FLIP_TOP_BOTTOM,
    Orientation.ROTATE_90: T.ROTATE_270,
    Orientation.ROTATE_180: T.ROTATE_180,
    Orientation.ROTATE_270: T.ROTATE_90,
    Orientation.TRANSPOSE: T.TRANSPOSE,
    Orientation.TRANSVERSE: T.TRANSVERSE,
}
LIMIT = 10**9


def hashes(image: Image.Image) -> ImageHashes:
    return hash_image_bytes(encode(image), max_pixels=LIMIT)


@pytest.mark.parametrize("orientation", list(Orientation))
def test_turning_the_query_back_recovers_the_stored_hashes(orientation: Orientation) -> None:
    stored = make_photo(11, (360, 240))
    turn = TURN[orientation]
    query = stored if turn is None else stored.transpose(turn)
    expected = hashes(stored)
    from_pixels = variants_of_image(hashes(query))[orientation]
    # hashed from pixels: all three, of the whole picture and of its centre
    for part, grids in ((from_pixels.whole, expected.whole), (from_pixels.centre, expected.centre)):
        assert part is not None and part.vertical is not None and part.dct is not None
        want = grids.signature
        assert want.vertical is not None and want.dct is not None
        assert hamming(part.dhash, want.dhash) <= 1
        assert hamming(part.vertical, want.vertical) <= 1
        assert hamming(part.dct, want.dct) <= 1
    # the windows are placed symmetrically: each turned back is one of the stored picture's windows
    assert len(from_pixels.windows) == len(expected.windows) == len(WINDOWS)
    stored_windows = [grids.signature.dhash for grids in expected.windows]
    assert all(min(hamming(w.dhash, s) for s in stored_windows) <= 1 for w in from_pixels.windows)


@pytest.mark.parametrize("orientation", list(Orientation))
def test_stored_hashes_give_the_same_variants(orientation: Orientation) -> None:
    image = hashes(make_photo(12, (300, 300)))
    from_pixels = variants_of_image(image)[orientation]
    from_bits = variants_of_hashes(image.dhash, image.dhash_vertical, image.dct_hash)[orientation]
    stored = variants_of_stored(image.whole.signature, image.centre.signature)[orientation]
    assert stored.whole == from_bits and stored.windows == ()  # a stored image has no windows
    for bits, pixels in ((from_bits, from_pixels.whole), (stored.centre, from_pixels.centre)):
        assert bits is not None and pixels is not None
        assert bits.dct == pixels.dct  # signs map to signs exactly
        assert hamming(bits.dhash, pixels.dhash) <= 4  # ties between equal neighbours may differ
        assert bits.vertical is not None and pixels.vertical is not None
        assert hamming(bits.vertical, pixels.vertical) <= 4


def test_a_stored_image_without_a_centre_has_variants_of_its_whole_picture_alone() -> None:
    image = hashes(make_photo(12, (300, 300)))
    variants = variants_of_stored(image.whole.signature, None)
    assert set(variants) == set(Orientation)
    assert all(v.centre is None and v.windows == () for v in variants.values())
    assert variants[Orientation.ORIGINAL].whole == image.signature


def test_a_turned_image_is_far_from_the_original() -> None:
    image = hashes(make_photo(13))
    variants = variants_of_image(image)
    assert variants[Orientation.ORIGINAL].whole == image.signature
    assert variants[Orientation.ORIGINAL].centre == image.centre.signature
    for orientation, variant in variants.items():
        if orientation is not Orientation.ORIGINAL:
            assert variant.centre is not None
            assert hamming(variant.whole.dhash, image.dhash) > 10, orientation
            assert hamming(variant.centre.dhash, image.centre.signature.dhash) > 10, orientation


def test_without_a_vertical_hash_only_the_axis_keeping_variants_exist() -> None:
    variants = variants_of_hashes(0x0123456789ABCDEF, None, None)
    assert list(variants) == [
        Orientation.ORIGINAL,
        Orientation.FLIP_HORIZONTAL,
        Orientation.FLIP_VERTICAL,
        Orientation.ROTATE_180,
    ]
    assert variants[Orientation.ORIGINAL].dhash == 0x0123456789ABCDEF
    assert variants[Orientation.FLIP_HORIZONTAL].dct is None
