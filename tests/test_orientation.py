"""app.imaging.orientation: hashes of flipped and turned images, from pixels and from stored hashes."""

import pytest
from helpers import encode, make_photo
from PIL import Image

from app.imaging.hashing import ImageHashes, hamming, hash_image_bytes
from app.imaging.orientation import variants_of_hashes, variants_of_image
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
    assert from_pixels.vertical is not None and from_pixels.dct is not None  # hashed from pixels: all three
    assert hamming(from_pixels.dhash, expected.dhash) <= 1
    assert hamming(from_pixels.vertical, expected.dhash_vertical) <= 1
    assert hamming(from_pixels.dct, expected.dct_hash) <= 1


@pytest.mark.parametrize("orientation", list(Orientation))
def test_stored_hashes_give_the_same_variants(orientation: Orientation) -> None:
    image = hashes(make_photo(12, (300, 300)))
    from_pixels = variants_of_image(image)[orientation]
    from_bits = variants_of_hashes(image.dhash, image.dhash_vertical, image.dct_hash)[orientation]
    assert from_bits.dct == from_pixels.dct  # signs map to signs exactly
    assert hamming(from_bits.dhash, from_pixels.dhash) <= 4  # ties between equal neighbours may differ
    assert from_bits.vertical is not None and from_pixels.vertical is not None
    assert hamming(from_bits.vertical, from_pixels.vertical) <= 4


def test_a_turned_image_is_far_from_the_original() -> None:
    image = hashes(make_photo(13))
    variants = variants_of_image(image)
    assert variants[Orientation.ORIGINAL].dhash == image.dhash
    assert all(
        hamming(v.dhash, image.dhash) > 10 for o, v in variants.items() if o is not Orientation.ORIGINAL
    )


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
