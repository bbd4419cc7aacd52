"""app.imaging.hashing: parity with imagehash, what a viewer sees, and refusing bad input."""

import io

import imagehash
import numpy as np
import pytest
from helpers import encode, encode_oriented, grey_of, make_photo, needs_shared, shared_files
from PIL import Image, ImageOps

from app.errors import CorruptImage, ImageTooLarge, UnsupportedImage
from app.imaging.hashing import (
    FLAT_SPREAD,
    MAX_SIDE,
    Grids,
    ImageHashes,
    as_displayed,
    hamming,
    hash_hex,
    hash_image_bytes,
    low_frequencies,
    on_white,
    parse_hash_hex,
    upright,
    write_grey,
)

LIMIT = 100_000_000


def hash_of(data: bytes) -> int:
    return hash_image_bytes(data, max_pixels=LIMIT).dhash


def reference(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        return int(str(imagehash.dhash(image)), 16)


@pytest.mark.parametrize("seed", range(5))
def test_png_hash_equals_imagehash_exactly(seed: int) -> None:
    data = encode(make_photo(seed))
    assert hash_hex(hash_of(data)) == str(imagehash.dhash(Image.open(io.BytesIO(data))))


def test_vertical_hash_equals_imagehash_dhash_vertical() -> None:
    data = encode(make_photo(7))
    hashes = hash_image_bytes(data, max_pixels=LIMIT)
    assert hash_hex(hashes.dhash_vertical) == str(imagehash.dhash_vertical(Image.open(io.BytesIO(data))))


@pytest.mark.parametrize("seed", range(5))
def test_jpeg_hash_within_three_bits_of_imagehash(seed: int) -> None:
    data = encode(make_photo(seed, (2400, 1800)), "JPEG", quality=90)
    assert hamming(hash_of(data), reference(data)) <= 3


@needs_shared
def test_real_photos_hash_like_imagehash() -> None:
    files = shared_files("dev") + shared_files("large")
    distances = []
    for path in files:
        with Image.open(path) as image:
            if image.getexif().get(0x0112, 1) != 1 or "A" in image.mode or "transparency" in image.info:
                continue  # Doppel flattens and rotates these on purpose; imagehash does not
        data = path.read_bytes()
        distances.append(hamming(hash_of(data), reference(data)))
    assert len(distances) >= 70
    assert max(distances) <= 3
    assert distances.count(0) / len(distances) >= 0.8


@pytest.mark.parametrize(("spread", "flat"), [(0, True), (FLAT_SPREAD - 1, True), (FLAT_SPREAD, False)])
def test_a_picture_is_flat_when_its_grid_spans_few_grey_levels(spread: int, flat: bool) -> None:
    wide = np.full((8, 9), 200.0)
    wide[3, 4] += spread
    grids = Grids(wide, wide.T.copy(), np.zeros((8, 8)))
    assert ImageHashes(90, 80, grids, grids, ()).flat is flat


def test_blank_pages_and_plain_textures_are_flat_and_photos_are_not() -> None:
    blank = Image.new("RGB", (640, 480), (250, 250, 245))
    assert hash_image_bytes(encode(blank, "PNG"), max_pixels=LIMIT).flat
    assert not hash_image_bytes(encode(make_photo(5)), max_pixels=LIMIT).flat


def test_hex_round_trip() -> None:
    assert parse_hash_hex(hash_hex(0x0123456789ABCDEF)) == 0x0123456789ABCDEF
    assert hash_hex(1) == "0000000000000001"
    for bad in ["", "123", "0123456789abcdeg", "0x23456789abcdef", "+123456789abcdef", "0123456789abcdef0"]:
        with pytest.raises(ValueError):
            parse_hash_hex(bad)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int, fmt: str) -> None:
    # Pillow's TIFF reader turns the pixels itself while loading: they must not be turned twice.
    upright = make_photo(3, (400, 300))
    data = encode_oriented(upright, orientation, fmt, quality=95)
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == (400, 300)
    hashes = hash_image_bytes(data, max_pixels=LIMIT)
    assert (hashes.width, hashes.height) == (400, 300)
    assert hamming(hashes.dhash, hash_of(encode(upright))) <= 3


XMP_TURNED = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'


@pytest.mark.parametrize("exif_orientation", [None, 1, 8])
def test_xmp_orientation_counts_only_where_exif_has_none(exif_orientation: int | None) -> None:
    # As Pillow's getexif: EXIF's tag wins; without it (or without EXIF), XMP's applies.
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"
    if exif_orientation is not None:
        exif[0x0112] = exif_orientation
    buffer = io.BytesIO()
    make_photo(3, (400, 300)).save(buffer, "JPEG", exif=exif, xmp=XMP_TURNED)
    hashes = hash_image_bytes(buffer.getvalue(), max_pixels=LIMIT)
    turned = exif_orientation in (None, 8)
    assert (hashes.width, hashes.height) == ((300, 400) if turned else (400, 300))


def test_transparency_is_flattened_onto_white() -> None:
    photo = make_photo(4, (300, 300))
    rgba = photo.convert("RGBA")
    alpha = Image.new("L", rgba.size, 0)
    alpha.paste(255, (0, 0, 150, 300))  # left half opaque, right half transparent
    rgba.putalpha(alpha)
    on_white = Image.new("RGB", rgba.size, "white")
    on_white.paste(photo.crop((0, 0, 150, 300)), (0, 0))
    assert hash_of(encode(rgba)) == hash_of(encode(on_white))
    # imagehash ignores alpha and sees the hidden pixels: a different picture
    assert hamming(hash_of(encode(rgba)), hash_of(encode(photo))) > 10


def _semi_transparent(mode: str) -> Image.Image:
    """Every grey value under every alpha (256 x 256), in `mode`; palette images get a palette of
    random colours with random per-entry alphas, or one transparent entry."""
    value, alpha = np.meshgrid(np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8))
    if mode == "LA":
        return Image.fromarray(np.stack([value, alpha], axis=-1), "LA")
    rng = np.random.default_rng(3)
    if mode == "RGBA":
        colours = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
        return Image.fromarray(np.dstack([colours, alpha]), "RGBA")
    palette = Image.fromarray(value.T.copy(), "L").convert("P")
    palette.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
    buffer = io.BytesIO()
    transparency = 7 if mode == "P one transparent" else rng.integers(0, 256, 256, dtype=np.uint8).tobytes()
    palette.save(buffer, "PNG", transparency=transparency)
    return Image.open(buffer)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "P one transparent"])
def test_flattening_gives_the_values_of_alpha_composite_onto_white(mode: str) -> None:
    image = _semi_transparent(mode)
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    expected = Image.alpha_composite(white, image.convert("RGBA"))
    assert np.array_equal(grey_of(image), np.asarray(expected.convert("L")))
    # in colour too (the eval tool's edits start from it)
    assert np.array_equal(np.asarray(on_white(image).convert("RGB")), np.asarray(expected.convert("RGB")))


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1", "LA", "I;16"])
def test_any_mode_hashes_close_to_rgb(mode: str) -> None:
    photo = make_photo(5, (320, 240))
    expected = hash_of(encode(photo.convert("L")))
    if mode == "I;16":
        wide = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
        data = encode(Image.fromarray(wide))
        assert Image.open(io.BytesIO(data)).mode.startswith("I")
    else:
        data = encode(photo.convert(mode), "TIFF" if mode == "CMYK" else "PNG")
    limit = 20 if mode == "1" else 3  # 1-bit dithering moves more bits
    assert hamming(hash_of(data), expected) <= limit


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("JPEG", {"quality": 90}),
        ("WEBP", {"quality": 90}),
        ("GIF", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("HEIF", {"quality": 90}),
        ("AVIF", {"quality": 90}),
    ],
)
def test_formats_hash_like_png(fmt: str, options: dict[str, object]) -> None:
    photo = make_photo(6, (480, 360))
    assert hamming(hash_of(encode(photo, fmt, **options)), hash_of(encode(photo))) <= 4


def test_animation_hashes_its_first_frame() -> None:
    first, second = make_photo(8, (200, 150)), make_photo(9, (200, 150))
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert hamming(hash_of(data), hash_of(encode(first, "GIF"))) == 0
    assert hamming(hash_of(data), hash_of(encode(second, "GIF"))) > 10


@pytest.mark.parametrize(
    "data", [b"", b"hello, world", b"<html><body>hi</body></html>", bytes(range(256)) * 4]
)
def test_non_images_are_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedImage):
        hash_image_bytes(data, max_pixels=LIMIT)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_images_are_corrupt(fmt: str) -> None:
    data = encode(make_photo(10), fmt)
    for cut in (20, len(data) // 3, len(data) - 200):
        with pytest.raises(CorruptImage):
            hash_image_bytes(data[:cut], max_pixels=LIMIT)


def test_pixel_limit_is_checked_before_decoding() -> None:
    data = encode(Image.new("L", (2000, 1000)), "PNG")
    with pytest.raises(ImageTooLarge, match="2000x1000"):
        hash_image_bytes(data, max_pixels=1_999_999)
    assert hash_image_bytes(data, max_pixels=2_000_000).width == 2000


def test_a_side_over_the_limit_is_refused_before_decoding() -> None:
    # A few KB of PNG, within the pixel limit: its resize weights alone would take gigabytes.
    with pytest.raises(ImageTooLarge, match=f"1x{MAX_SIDE + 1}: a side is over the limit of {MAX_SIDE}"):
        hash_image_bytes(encode(Image.new("L", (1, MAX_SIDE + 1)), "PNG"), max_pixels=LIMIT)
    assert hash_image_bytes(encode(Image.new("L", (MAX_SIDE, 2)), "PNG"), max_pixels=LIMIT).width == MAX_SIDE


def test_sixteen_bit_grey_with_a_transparent_value_is_scaled_then_flattened() -> None:
    grey = make_photo(14, (200, 150)).convert("L")
    wide = (np.asarray(grey, dtype=np.uint16) * 257).astype(np.uint16)
    wide[:, :20] = 7  # a transparent band on the left
    buffer = io.BytesIO()
    Image.fromarray(wide).save(buffer, "PNG", transparency=7)
    assert "transparency" in Image.open(io.BytesIO(buffer.getvalue())).info
    on_white = np.asarray(grey).copy()
    on_white[:, :20] = 255
    assert hamming(hash_of(buffer.getvalue()), hash_of(encode(Image.fromarray(on_white)))) <= 1


def test_text_starting_like_a_bitmap_is_not_an_image() -> None:
    with pytest.raises(UnsupportedImage):
        hash_image_bytes(b"BMW 320d, 2019, one owner, full service history", max_pixels=LIMIT)
    with pytest.raises(CorruptImage):
        hash_image_bytes(encode(make_photo(1, (40, 30)), "BMP")[:60], max_pixels=LIMIT)


def test_dct_coefficients_equal_scipys_dct() -> None:
    from scipy.fft import dctn  # installed with imagehash, whose pHash uses it

    square = np.random.default_rng(11).integers(0, 256, (32, 32)).astype(np.uint8)
    assert np.allclose(
        low_frequencies(square), dctn(square.astype(np.float64), type=2)[:8, :8], rtol=0, atol=1e-8
    )


@pytest.mark.parametrize("transpose", [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90, None])
def test_a_flat_image_has_only_its_mean_in_the_dct_hash(transpose: Image.Transpose | None) -> None:
    # Its other coefficients are 0 in exact arithmetic, noise of either sign in floating point.
    flat = Image.new("L", (64, 48), 77)
    image = flat if transpose is None else flat.transpose(transpose)
    assert hash_image_bytes(encode(image), max_pixels=LIMIT).dct_hash == 1 << 63


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "CMYK", "YCbCr", "1"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_grey_is_pillows_grey_of_the_upright_image(mode: str, orientation: int) -> None:
    # Doppel turns the image once grey, and writes Pillow's RGB-to-grey straight into numpy:
    # the same pixels as turning first and converting with convert("L").
    image = make_photo(orientation, (211, 97)).convert(mode)  # odd sizes: rows not a multiple of 4 bytes
    expected = upright(image, orientation)
    expected = on_white(expected) if mode == "RGBA" else expected
    displayed = as_displayed(image, orientation)
    assert displayed.mode in ("L", "RGB")
    grey = np.empty((displayed.height, displayed.width), dtype=np.uint8)
    write_grey(displayed, grey)
    assert np.array_equal(grey, np.asarray(expected.convert("L")))


@pytest.mark.parametrize("palette_mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("entries", [1, 5, 256])
def test_a_palette_image_is_pillows_grey_even_with_indices_past_its_palette(
    palette_mode: str, entries: int
) -> None:
    rng = np.random.default_rng(entries)
    image = Image.fromarray(rng.integers(0, 256, (40, 70), dtype=np.uint8), "P")
    image.putpalette(
        rng.integers(0, 256, entries * len(palette_mode), dtype=np.uint8).tobytes(), palette_mode
    )
    displayed = as_displayed(image, 1)
    grey = np.empty((40, 70), dtype=np.uint8)
    write_grey(displayed, grey)
    assert np.array_equal(grey, np.asarray(image.convert("L")))


def test_grey_is_refused_into_an_array_of_another_size() -> None:
    with pytest.raises(ValueError, match="do not match"):
        write_grey(make_photo(1, (40, 30)), np.empty((40, 30), dtype=np.uint8))  # rows x cols: 30 x 40


@pytest.mark.parametrize("orientation", [1, 6])
def test_a_flattened_palette_image_keeps_no_transparency(orientation: int) -> None:
    palette = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L").convert("P")
    palette.putpalette(bytes(range(256)) * 3)
    image = Image.open(io.BytesIO(encode(palette, "PNG", transparency=7)))
    image.load()
    displayed = as_displayed(image, orientation)
    assert displayed.mode == "L" and "transparency" not in displayed.info  # it would flatten again
    expected = upright(on_white(image), orientation).convert("L")
    assert np.array_equal(np.asarray(displayed), np.asarray(expected))


def test_a_lab_image_hashes_like_its_rgb() -> None:
    photo = make_photo(4, (320, 240))
    assert hamming(hash_of(encode(photo.convert("LAB"), "TIFF")), hash_of(encode(photo))) <= 3
