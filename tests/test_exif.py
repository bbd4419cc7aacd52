"""app.exif: the orientation read from a raw EXIF block is always the one Pillow reads."""

import io
import random
import struct
import warnings
from collections.abc import Mapping

import pytest
from helpers import make_photo, needs_shared, shared_files
from PIL import Image

from app.exif import ORIENTATION_TAG, UPRIGHT, orientation_in_exif


def exif_block(tags: Mapping[int, object], endian: str = "<", prefix: bytes = b"Exif\x00\x00") -> bytes:
    exif = Image.Exif()
    exif.endian = endian
    for tag, value in tags.items():
        exif[tag] = value
    return prefix + exif.tobytes()[len(b"Exif\x00\x00") :]


def pillows(block: bytes) -> int:
    """What Image.getexif() reads from the block (as orientation_to_apply falls back to it)."""
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif.load(block)
        return int(exif.get(ORIENTATION_TAG, UPRIGHT))
    except Exception:
        return UPRIGHT


CAMERA_TAGS = {
    0x010F: "Camera maker",
    0x0110: "Model X",
    0x0131: "firmware 1.0",
    0x0132: "2026:12:02 10:00:00",
}


@pytest.mark.parametrize("endian", ["<", ">"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_tag_is_read_in_either_byte_order(endian: str, orientation: int) -> None:
    block = exif_block({**CAMERA_TAGS, ORIENTATION_TAG: orientation}, endian)
    assert orientation_in_exif(block) == orientation == pillows(block)


@pytest.mark.parametrize("prefix", [b"", b"Exif\x00\x00", b"Exif\x00\x00Exif\x00\x00"])
def test_one_or_two_exif_prefixes_or_none_as_pillow(prefix: bytes) -> None:
    block = exif_block({ORIENTATION_TAG: 6}, prefix=prefix)
    assert orientation_in_exif(block) == 6 == pillows(block)


def test_a_block_without_the_tag_is_upright() -> None:
    block = exif_block(CAMERA_TAGS)
    assert orientation_in_exif(block) == UPRIGHT == pillows(block)


def test_the_tag_in_another_form_is_left_to_pillow() -> None:
    block = bytearray(exif_block({ORIENTATION_TAG: 6}))
    entry = block.index(struct.pack("<HHI", ORIENTATION_TAG, 3, 1))
    block[entry + 2 : entry + 4] = struct.pack("<H", 4)  # a LONG instead of a SHORT
    assert orientation_in_exif(bytes(block)) is None


def test_a_repeated_tag_reads_as_its_first_as_pillow() -> None:
    # IFD0 with two orientation entries, built by hand: Pillow keeps the first it reads.
    entries = [struct.pack("<HHIH2x", ORIENTATION_TAG, 3, 1, value) for value in (3, 8)]
    block = b"Exif\x00\x00II*\x00" + struct.pack("<IH", 8, 2) + b"".join(entries) + struct.pack("<I", 0)
    assert orientation_in_exif(block) == 3 == pillows(block)


@pytest.mark.parametrize(
    "block", [b"", b"Exif\x00\x00", b"Exif\x00\x00II*\x00", b"MM\x00*\xff\xff\xff\xff", b"junk" * 10]
)
def test_damaged_or_foreign_blocks_are_left_to_pillow(block: bytes) -> None:
    assert orientation_in_exif(block) is None


def test_every_answer_on_damaged_blocks_is_pillows() -> None:
    """Truncated and bit-flipped copies of real blocks: whatever is answered, Pillow agrees."""
    sources = [
        exif_block({**CAMERA_TAGS, ORIENTATION_TAG: 6}),
        exif_block({ORIENTATION_TAG: 3, **CAMERA_TAGS}, ">"),
    ]
    rng = random.Random(7)
    answered = 0
    for n in range(4000):
        block = bytearray(rng.choice(sources))
        if n % 2:
            del block[rng.randrange(1, len(block)) :]
        for _ in range(rng.randint(1, 3)):
            block[rng.randrange(len(block))] = rng.randrange(256)
        found = orientation_in_exif(bytes(block))
        if found is not None:
            answered += 1
            assert found == pillows(bytes(block)), bytes(block)
    assert answered > 1000  # most damage leaves IFD0's entries readable


def test_a_value_past_the_end_before_the_tag_is_left_to_pillow() -> None:
    # Pillow stops reading IFD0 at the maker's name, which lies past the end: it never sees the tag.
    block = exif_block({**CAMERA_TAGS, ORIENTATION_TAG: 6})
    cut = block[: block.index(b"Camera maker") + 4]
    assert pillows(cut) == UPRIGHT and orientation_in_exif(cut) is None


def test_a_jpeg_written_by_pillow() -> None:
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 5
    buffer = io.BytesIO()
    make_photo(1, (64, 48)).save(buffer, "JPEG", exif=exif)
    with Image.open(buffer) as image:
        assert orientation_in_exif(image.info["exif"]) == 5 == image.getexif()[ORIENTATION_TAG]


@needs_shared
def test_camera_files_read_as_pillow_reads_them() -> None:
    seen = 0
    for path in shared_files("dev") + shared_files("natural") + shared_files("large"):
        with Image.open(path) as image:
            block = image.info.get("exif")
            if isinstance(block, bytes):
                seen += 1
                assert orientation_in_exif(block) == pillows(block), path.name
    assert seen >= 20
