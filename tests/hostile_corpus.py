"""A generated corpus of odd and hostile uploads, each with the answer Doppel must give.

Everything is built here from fixed seeds; no file is read. `Refused` uploads must get their
status with a `detail` containing `words`; `Accepted` ones must be stored with their displayed size.
"""

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

import numpy as np
from helpers import encode, encode_oriented, make_photo
from PIL import Image

BOMB_SIDE = 60_000  # 3.6 billion pixels: 3.6 GB as 8-bit grey, ~11 GB as RGB, if ever decoded


@dataclass(frozen=True)
class Refused:
    name: str
    data: bytes
    status: int
    words: str


@dataclass(frozen=True)
class Accepted:
    name: str
    data: bytes
    size: tuple[int, int]  # width, height as displayed


def refused() -> list[Refused]:
    jpeg = encode(make_photo(1), "JPEG", quality=90)
    png = encode(make_photo(2))
    webp = encode(make_photo(3), "WEBP", quality=80)
    not_an_image = "not an image in a supported format"
    cases = [
        Refused("empty", b"", 415, "empty"),
        Refused("text", b"just some words, no pixels\n" * 10, 415, not_an_image),
        Refused(
            "html",
            b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>",
            415,
            not_an_image,
        ),
        Refused("svg", _svg(), 415, not_an_image),
        Refused("pdf", _pdf(), 415, not_an_image),
        Refused("zip", _zip(), 415, not_an_image),
        # Pillow would hand this to Ghostscript if EPS were among the formats it may open.
        Refused("eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n", 415, not_an_image),
        Refused("tga-like zeros", bytes(4096), 415, not_an_image),
        *[
            Refused(f"random {n}", _random_bytes(seed=n, size=200 + 5000 * n), 415, not_an_image)
            for n in range(3)
        ],
        # cut short: in the header, then in the pixel data
        *[Refused(f"jpeg cut at {cut}", jpeg[:cut], 422, "") for cut in (3, 20, 200)],
        *[
            Refused(f"jpeg cut at {pct}%", jpeg[: len(jpeg) * pct // 100], 422, "could not be decoded")
            for pct in (50, 90)
        ],
        *[Refused(f"png cut at {cut}", png[:cut], 422, "") for cut in (8, 20, 40)],
        *[
            Refused(f"png cut at {pct}%", png[: len(png) * pct // 100], 422, "could not be decoded")
            for pct in (50, 90)
        ],
        *[Refused(f"webp cut at {cut}", webp[:cut], 422, "") for cut in (12, 20, 30)],
        *[Refused(f"webp cut at {pct}%", webp[: len(webp) * pct // 100], 422, "") for pct in (50, 90)],
        Refused("jpeg with flipped header bytes", _flip_jpeg_tables(jpeg), 422, ""),
        # headers that declare 60000x60000 pixels over a few bytes of data
        Refused("png bomb", _png_bomb(), 413, f"{BOMB_SIDE}x{BOMB_SIDE}"),
        Refused("jpeg bomb", _jpeg_bomb(jpeg), 413, f"{BOMB_SIDE}x{BOMB_SIDE}"),
        Refused("gif bomb", _gif_bomb(), 413, f"{BOMB_SIDE}x{BOMB_SIDE}"),
        Refused("tiff bomb", _tiff_bomb(), 413, f"{BOMB_SIDE}x{BOMB_SIDE}"),
        Refused("bmp bomb", _bmp_bomb(), 413, f"{BOMB_SIDE}x{BOMB_SIDE}"),
        # 1,000,000 pixels in 2 KB: within the pixel limit, but its side would need 200 MB of weights
        Refused("strip bomb", encode(Image.new("L", (1, 1_000_000))), 413, "1x1000000: a side is over"),
    ]
    return cases


def bombs() -> list[bytes]:
    return [case.data for case in refused() if case.name.endswith(" bomb")]


def accepted() -> list[Accepted]:
    photo = make_photo(4, (320, 240))
    jpeg = encode(photo, "JPEG", quality=90)
    cases = [
        Accepted("1x1", encode(Image.new("RGB", (1, 1), (200, 10, 10))), (1, 1)),
        Accepted("10000x1", encode(make_photo(5, (10000, 1))), (10000, 1)),
        Accepted("1x10000", encode(make_photo(6, (1, 10000))), (1, 10000)),
        Accepted("cmyk jpeg", encode(photo.convert("CMYK"), "JPEG", quality=90), (320, 240)),
        Accepted("16-bit png", encode(_sixteen_bit(photo)), (320, 240)),
        Accepted("palette with transparency", _palette_with_transparency(photo), (320, 240)),
        Accepted("grey with alpha", encode(photo.convert("LA")), (320, 240)),
        Accepted("animated gif", _animated_gif(), (160, 120)),
        Accepted("progressive jpeg", encode(photo, "JPEG", quality=85, progressive=True), (320, 240)),
        Accepted("tiff", encode(photo, "TIFF", compression="tiff_lzw"), (320, 240)),
        Accepted("bmp", encode(photo, "BMP"), (320, 240)),
        Accepted("lossless webp", encode(photo, "WEBP", lossless=True), (320, 240)),
        # a polyglot: the image is what a viewer shows; the ZIP after it is never read
        Accepted("jpeg with a zip appended", jpeg + _zip(), (320, 240)),
        *[
            Accepted(f"exif orientation {o}", encode_oriented(photo, o, quality=90), (320, 240))
            for o in range(1, 9)
        ],
    ]
    return cases


def _random_bytes(*, seed: int, size: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def _svg() -> bytes:
    return (
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="60000" height="60000"><text>&x;</text></svg>'
    )


def _pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n%%EOF\n"
    )


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.txt", "A" * 10_000)
    return buffer.getvalue()


def _flip_jpeg_tables(jpeg: bytes) -> bytes:
    """Invert every byte of the Huffman tables (DHT segments) and the frame header (SOF0)."""
    data = bytearray(jpeg)
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        (length,) = struct.unpack(">H", data[position + 2 : position + 4])
        if marker in (0xC4, 0xC0):
            for i in range(position + 4, position + 2 + length):
                data[i] ^= 0xFF
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            break
        position += 2 + length
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_bomb() -> bytes:
    """A complete, valid 60000x60000 grey PNG of 3.5 MB: decoding it would take 3.6 GB."""
    header = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 8, 0, 0, 0, 0)  # 8-bit grey
    pixels = _zlib_zeros(block=(BOMB_SIDE + 1) * 10, repeats=BOMB_SIDE // 10)  # rows: filter byte + pixels
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
    )


def _zlib_zeros(*, block: int, repeats: int) -> bytes:
    """A zlib stream of block * repeats zero bytes, built without compressing them all: a deflate
    run ended by a full flush is byte-aligned and refers to nothing before it, so copies chain."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    run = deflate.compress(bytes(block)) + deflate.flush(zlib.Z_FULL_FLUSH)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()  # an empty final block
    adler = ((block * repeats) % 65521) << 16 | 1  # Adler-32 of zeros: a stays 1, b counts the bytes
    return b"\x78\xda" + run * repeats + end + struct.pack(">I", adler)


def _jpeg_bomb(jpeg: bytes) -> bytes:
    """A real JPEG whose frame header (SOF0) says 60000x60000."""
    sof = jpeg.index(b"\xff\xc0")
    return jpeg[: sof + 5] + struct.pack(">HH", BOMB_SIDE, BOMB_SIDE) + jpeg[sof + 9 :]


def _gif_bomb() -> bytes:
    screen = b"GIF89a" + struct.pack("<HH", BOMB_SIDE, BOMB_SIDE) + b"\x00\x00\x00"
    frame = b"\x2c" + struct.pack("<HHHH", 0, 0, BOMB_SIDE, BOMB_SIDE) + b"\x00"
    return screen + frame + b"\x02\x02\x44\x01\x00\x3b"


def _tiff_bomb() -> bytes:
    tags = [
        (256, 4, BOMB_SIDE),
        (257, 4, BOMB_SIDE),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8),
        (279, 4, 1),
    ]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", tag, kind, 1, value) for tag, kind, value in tags
    )
    return b"II*\x00" + struct.pack("<I", 8 + 1) + b"\0" + ifd + struct.pack("<I", 0)


def _bmp_bomb() -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, BOMB_SIDE, BOMB_SIDE, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + 40 + 64, 0, 0, 14 + 40) + info + bytes(64)


def _sixteen_bit(photo: Image.Image) -> Image.Image:
    grey = np.asarray(photo.convert("L"), dtype=np.uint16) * 257
    return Image.fromarray(grey.astype(np.uint16))


def _palette_with_transparency(photo: Image.Image) -> bytes:
    image = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    return encode(image, "PNG", transparency=0)


def _animated_gif() -> bytes:
    frames = [make_photo(10 + n, (160, 120)).convert("P") for n in range(4)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
