"""Border trimming: uniform borders are found on grey images, and pictures keep their own edges."""

import io

import numpy as np
import pytest
from helpers import encode, grey_of, make_photo
from PIL import Image, ImageDraw, ImageOps

from app.imaging.borders import MAX_TRIM_SHARE, content_box, content_cuts
from app.imaging.hashing import hamming, hash_image_bytes


def grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"))


def near(box: tuple[int, int, int, int], expected: tuple[int, int, int, int]) -> bool:
    """Borders are found on the image shrunk to a shorter side of 128: within a pixel of that
    (about 3 of these images'), and never more than the border."""
    top, bottom, left, right = box
    within = all(abs(a - b) <= 3 for a, b in zip(box, expected, strict=True))
    return (
        within
        and top <= expected[0]
        and bottom >= expected[1]
        and left <= expected[2]
        and right >= expected[3]
    )


PHOTO = make_photo(7, (400, 300))


@pytest.mark.parametrize(
    ("border", "colour"),
    [
        ((0, 40, 0, 40), "black"),  # letterbox
        ((60, 0, 60, 0), "black"),  # pillarbox
        ((12, 12, 12, 12), "white"),
        ((30, 30, 30, 30), (200, 30, 30)),
        ((5, 20, 35, 10), (90, 140, 200)),  # uneven, each side its own width
    ],
)
def test_uniform_borders_are_trimmed_exactly(border: tuple[int, int, int, int], colour: object) -> None:
    framed = ImageOps.expand(PHOTO, border=border, fill=colour)  # type: ignore[arg-type]
    left, top, right, bottom = border
    assert near(content_box(grey(framed)), (top, top + 300, left, left + 400))


def test_a_jpeg_letterbox_is_trimmed_to_within_a_few_lines() -> None:
    framed = ImageOps.expand(PHOTO, border=(0, 50, 0, 50), fill="black")
    assert near(
        content_box(grey_of(Image.open(io.BytesIO(encode(framed, "JPEG", quality=75))))), (50, 350, 0, 400)
    )


def test_a_picture_without_borders_is_left_whole() -> None:
    assert content_box(grey(PHOTO)) == (0, 300, 0, 400)


def test_a_dark_edge_with_texture_beyond_the_tolerance_is_not_a_border() -> None:
    pixels = grey(PHOTO).copy()
    rng = np.random.default_rng(1)
    pixels[:80] = rng.integers(0, 60, size=(80, 400))  # a dark, noisy sky: not one colour
    assert content_box(pixels) == (0, 300, 0, 400)


def test_a_logo_on_a_frame_does_not_stop_the_trim() -> None:
    framed = ImageOps.expand(PHOTO, border=40, fill="white")
    framed.paste((10, 10, 10), (100, 5, 110, 30))  # a small mark on the top frame: 10 of 480 px a line
    assert near(content_box(grey(framed)), (40, 340, 40, 440))


def test_flat_images_and_huge_borders_are_left_whole() -> None:
    assert content_box(np.full((50, 60), 128, np.uint8)) == (0, 50, 0, 60)
    small = PHOTO.resize((40, 30))
    bar = round(40 * MAX_TRIM_SHARE / (1 - MAX_TRIM_SHARE))  # the picture is under 1 - MAX_TRIM_SHARE
    bordered = ImageOps.expand(small, border=(bar, 0, bar, 0), fill="black")
    assert content_box(grey(bordered)) == (0, 30, 0, bordered.width)
    smaller = ImageOps.expand(small, border=(bar // 2, 0, bar // 2, 0), fill="black")
    assert near(content_box(grey(smaller)), (0, 30, bar // 2, bar // 2 + 40))


def test_a_phone_picture_in_a_video_frame_comes_out() -> None:
    portrait = make_photo(7, (270, 480))  # 9:16, a third of the width of its 16:9 frame
    framed = ImageOps.expand(portrait, border=(290, 0, 293, 0), fill="black")
    assert near(content_box(grey(framed)), (0, 480, 290, 560))


@pytest.mark.parametrize("colour", ["black", "white", (0, 120, 60)])
def test_a_bordered_copy_hashes_like_the_picture(colour: object) -> None:
    photo = make_photo(11, (640, 480))
    original = hash_image_bytes(encode(photo, "JPEG", quality=90), max_pixels=10**8)
    framed = ImageOps.expand(photo, border=(0, 80, 0, 80), fill=colour)  # type: ignore[arg-type]
    copy = hash_image_bytes(encode(framed, "JPEG", quality=90), max_pixels=10**8)
    assert hamming(original.dhash, copy.dhash) <= 3
    assert hamming(original.dct_hash, copy.dct_hash) <= 4


def test_a_flat_region_that_fades_into_the_picture_is_not_a_border() -> None:
    """A sky brightened until it clips to white is flat, but has no edge: a brighter or darker copy
    would lose another share of it, so none is trimmed."""
    pixels = grey(PHOTO).astype(np.float64)
    pixels[:100] = 255
    share = np.linspace(0, 1, 60)[:, np.newaxis]  # from clipped white, fading into the picture
    pixels[100:160] = 255 * (1 - share) + pixels[100:160] * share
    assert content_box(pixels.round().astype(np.uint8)) == (0, 300, 0, 400)


def test_padding_the_colour_of_a_pale_picture_edge_comes_off_only_in_the_unpadded_cut() -> None:
    # A sky a few levels under white, darker below: white padding above it does not end at an
    # edge, so the border trim keeps it (a clipped sky would look the same); the other box drops it.
    sky = np.linspace(246, 120, 200)[:, np.newaxis] + np.zeros((1, 300))
    picture = (sky + np.random.default_rng(1).normal(0, 2, sky.shape)).clip(0, 255).astype(np.uint8)
    padded = np.full((300, 300), 255, np.uint8)
    padded[50:250] = picture
    box, unpadded, *_ = content_cuts(padded)
    assert box[0] == 0 and abs(box[1] - 250) <= 3  # the white below ends at the dark ground
    assert abs(unpadded[0] - 50) <= 3 and unpadded[1] >= 240  # at most a few lines of the gradient
    assert content_box(picture) == (0, 200, 0, 300)


def test_a_picture_in_a_screenshot_is_the_inset_cut() -> None:
    # Status bar, an app bar with an avatar and a name, the picture, buttons and a caption: lines
    # of text and icons are not borders, but uniform lines set them apart from the picture.
    screen = Image.new("L", (400, 600), 250)
    screen.paste(20, (0, 0, 400, 30))
    screen.paste(128, (10, 45, 60, 95))  # the avatar
    screen.paste(0, (70, 60, 200, 75))  # the name
    screen.paste(PHOTO.convert("L"), (0, 110))  # 400 x 300
    screen.paste(0, (10, 430, 40, 460))  # buttons
    screen.paste(0, (60, 430, 90, 460))
    screen.paste(0, (10, 480, 300, 495))  # the caption
    cuts = content_cuts(np.asarray(screen))
    assert cuts.trimmed[:2] != (110, 410)
    assert near(cuts.inset, (110, 410, 0, 400))
    assert content_cuts(grey(PHOTO)).inset == (0, 300, 0, 400)


def cut_out() -> Image.Image:
    """An object on white with a thin margin (a product shot): a dark disc with a photo inside."""
    image = Image.new("RGB", (400, 400), "white")
    ImageDraw.Draw(image).ellipse((12, 12, 388, 388), fill=(20, 20, 20))
    image.paste(make_photo(3, (200, 200)), (100, 100))
    return image


def test_a_caption_bar_in_a_corner_of_the_margin_stops_the_trim_but_not_the_cornered_one() -> None:
    original = content_cuts(grey(cut_out()))
    assert near(original.trimmed, (12, 388, 12, 388)) and original.cornered == original.trimmed
    captioned = cut_out()
    ImageDraw.Draw(captioned).rectangle((0, 352, 128, 400), fill=(20, 20, 30))  # 32% x 12%, bottom left
    copy = content_cuts(grey(captioned))
    assert copy.trimmed[1] == 400 and copy.trimmed[2] == 0  # the bar's two sides keep their margin
    assert copy.cornered == original.trimmed


def test_the_cornered_trim_stops_at_what_strays_past_a_corner() -> None:
    marked = cut_out()
    ImageDraw.Draw(marked).rectangle((136, 392, 264, 400), fill="black")  # mid-side, not in a corner
    cuts = content_cuts(grey(marked))
    assert cuts.cornered[1] == 400 and cuts.cornered == cuts.trimmed
    assert content_cuts(grey(PHOTO)).cornered == (0, 300, 0, 400)
