"""Decode an image the way a viewer sees it and compute its difference hashes.

Pure functions: bytes in, hashes out; no HTTP, no storage. The dHash follows imagehash
(https://www.hackerfactor.com/blog/index.php?/archives/529-Kind-of-Like-That.html): grey,
resize to 9x8 with Lanczos, one bit per pair of horizontal neighbours (left < right),
packed row by row, most significant bit first, in the form of `str(imagehash.dhash(img))`.
Only what the 9x8 grid needs is decoded (JPEG at reduced scale, progressive JPEG without its AC
scans), and the resize is Pillow's Lanczos as matrix products (app/imaging/resample.py), so the hash is
within 3 bits of imagehash's, and identical for most images (tests/test_hashing.py holds it there).
Uniform borders (letterbox, frames, padding) are trimmed from the grey image first
(app/imaging/borders.py), so that a framed copy hashes like the picture.
"""

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import astuple, dataclass
from io import BytesIO

import numpy as np
import pillow_heif
from PIL import Image, UnidentifiedImageError

from app.errors import CorruptImage, ImageTooLarge, UnsupportedImage
from app.imaging.borders import Box, Cuts, content_cuts
from app.imaging.jpeg_dc import dc_scans_only
from app.imaging.resample import TALL, WIDE, lanczos_grids, rounded8
from app.imaging.scratch import SCRATCH

pillow_heif.register_heif_opener()
# Doppel checks the pixel count itself (before decoding) against its own setting.
Image.MAX_IMAGE_PIXELS = None

# The version of the hashing below. Raise it with any change that moves stored hashes (a new
# decode, resize or crop): every record keeps the version it was hashed with, so that records hashed
# before are counted and can be re-hashed (`python main.py rehash`, docs/accuracy.md). 2: uniform
# borders are trimmed before hashing. 3: the centre of the picture is hashed too. 4: the DCT hash is
# read from the 32x32 grid in 16ths of a grey level; borders of up to 75% of a side come off. 5: the
# picture's other cuts are stored too. 6: a third cut, the border trimmed past an overlay in a
# corner (app/imaging/borders.py `cornered`).
HASHING_VERSION = 6
# The most other cuts a picture has (`ImageHashes.alternatives`): every box of borders.Cuts but
# the trimmed one.
MAX_CUTS = len(Cuts._fields) - 1
_HEX16 = re.compile(r"[0-9a-fA-F]{16}")
# JPEG can decode at 1/2, 1/4 or 1/8 scale. Asking for at least this many pixels on each side
# keeps the 9x8 Lanczos result within a few bits of a full decode (measured on real photos).
JPEG_DRAFT_SIDE = 128
# Pillow's draft picks 1/8 when both sides are at least 8 times the asked side: then only the DC
# coefficients are read, and a progressive file can skip its AC scans (app/imaging/jpeg_dc.py).
_JPEG_DC_ONLY_SIDE = 8 * JPEG_DRAFT_SIDE
# The longest side accepted (JPEG's own limit): the resize's weights take 0.2 KB per pixel of a
# side, so a tiny file of 1 x 100,000,000 pixels (within the pixel limit) would need 20 GB.
MAX_SIDE = 65_535
DCT_SIDE = 32  # as imagehash.phash: 8 x its high-frequency factor 4
# The DCT's 32x32 grid is rounded to this fraction of a grey level, not to whole levels (and not
# clipped to 0-255) as Pillow stores it: a flat picture's faint texture lies within a level, where
# 8 bits leave only ties that noise breaks either way; and any rounding keeps a flat or
# mirror-symmetric image exactly so, where the weights' fixed point and float arithmetic move a
# value by at most ~0.02.
DCT_GRID_STEP = 1 / 16
# A picture whose 9x8 grid spans fewer grey levels than this is one flat tone at the scale the
# hashes see (a blank page, a plain texture): their bits are set by noise that any edit redraws,
# so its edited copies cannot be told from other flat pictures (TinEye's "too simple"). On the
# pictures of shared/images the grids of such span 1-2 levels; every other picture's spans 25 (a
# grey grass texture) or more.
FLAT_SPREAD = 8
# Parts of the picture hashed besides the whole, as (top, bottom, left, right) shares of its sides.
# The centre, kept with every image: captions, logos and meme text along the edges fall outside it.
CENTRE = (0.1, 0.9, 0.1, 0.9)
# Windows of a searched picture compared with stored centres: a copy cropped by up to about 10%,
# centred or not, still holds the original's centre, at about one of these places (8/9 of each
# side, in a corner or in the middle: 1/18 of a side at most from where it lies).
_WINDOW = 8 / 9
_WINDOW_STARTS = ((0.0, 0.0), (0.0, 1 / 9), (1 / 9, 0.0), (1 / 9, 1 / 9), (1 / 18, 1 / 18))
WINDOWS = tuple((top, top + _WINDOW, left, left + _WINDOW) for top, left in _WINDOW_STARTS)
# Parts are hashed from the picture shrunk (box filter) to a shorter side of at least this: the
# 9x8 grid of a part is as stable from it as from the full size, at a fraction of the time.
PART_SIDE = 128
# Rows k < 8 of the DCT-II matrix of size 32 (scipy's type 2, unnormalised): 2 cos(pi k (2n+1) / 64).
_DCT_LOW = 2 * np.cos(np.pi * np.outer(np.arange(8), 2 * np.arange(DCT_SIDE) + 1) / (2 * DCT_SIDE))
_DCT_LOW.flags.writeable = False
# Far above floating-point noise (~1e-11); a real coefficient this small is as good as 0 for a sign.
_DCT_ZERO = 1e-6
_WHITE = (255, 255, 255)
_ORIENTATION_TRANSPOSE = {  # as ImageOps.exif_transpose
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ORIENTATION_TAG = 0x0112
UPRIGHT = 1
_HIGH_BIT_DEPTH_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I", "F"}
if not hasattr(Image.new("L", (1, 1)).im, "convert_into"):  # write_grey's; Pillow-internal
    raise ImportError("Doppel needs Pillow's ImagingCore.convert_into: install requirements.txt's Pillow")

# The Pillow plugins Doppel lets open an upload. Pillow would otherwise try all ~45 of its readers,
# among them EPS (which runs Ghostscript on the upload) and lenient ones (TGA, SPIDER) that take
# random bytes for an image. JPEG covers MPO, the multi-picture JPEG of many cameras.
READ_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF", "AVIF")

# Leading bytes of the image formats Doppel reads: bytes that start like one of these but do not
# decode are a damaged image (422), anything else is not an image we read (415).
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (0, b"II*\x00"),  # TIFF, little-endian
    (0, b"MM\x00*"),  # TIFF, big-endian
    (8, b"WEBP"),
    (4, b"ftypheic"),
    (4, b"ftypheix"),
    (4, b"ftypmif1"),
    (4, b"ftypmsf1"),
    (4, b"ftypavif"),
    (4, b"ftypavis"),
)


# Peak bytes a pixel that decoding and hashing an image takes, by the mode its header declares:
# the decoded frame, the copies made on the way to grey (flattening, conversion) and the grey one.
# Measured single-threaded at 16 megapixels with bench/memory.py --costs, rounded up.
_DECODE_BYTES_PER_PIXEL = {
    "1": 4, "L": 3, "P": 4, "PA": 8, "LA": 7, "La": 7, "RGB": 6, "YCbCr": 7,
    "RGBA": 10, "RGBa": 10, "LAB": 10, "CMYK": 10,
}  # fmt: skip
# Formats whose decoders take more than the mode says: libwebp, libheif and the AVIF decoders
# decode into buffers of their own that Pillow then copies.
_DECODE_BYTES_PER_PIXEL_OF_FORMAT = {"WEBP": 18, "HEIF": 10, "AVIF": 14}
# A progressive JPEG's decoder holds every coefficient (2 bytes each) even at 1/8 scale.
_PROGRESSIVE_JPEG_BYTES_PER_PIXEL = {"L": 3, "RGB": 4, "CMYK": 9}
_JPEG_BYTES_PER_PIXEL = 1  # a reduced-scale decode: 0.3 measured
# 16 and 32-bit grey (I;16, I, F) are scaled to 8 bits in float64 arrays; and anything unlisted.
_DEEP_BYTES_PER_PIXEL = 33
# Around every decode: the resize's weights and blocks, decoder state.
_DECODE_OVERHEAD_BYTES = 4 << 20


NOT_AN_IMAGE = "not an image in a supported format (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF)"
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}


@dataclass(frozen=True, slots=True)
class Signature:
    """The hashes compared in a search; None where a hash is not known (hash-only records)."""

    dhash: int
    vertical: int | None
    dct: int | None


@dataclass(frozen=True, slots=True)
class Parts:
    """What a search compares: the whole picture's hashes, its centre's (None where not known), for
    a searched picture its windows' (`WINDOWS`), and its `alternatives` (ImageHashes', or a stored
    record's cuts)."""

    whole: Signature
    centre: Signature | None = None
    windows: tuple[Signature, ...] = ()
    alternatives: tuple[Signature, ...] = ()


@dataclass(frozen=True, slots=True)
class Grids:
    """The tiny grey images and coefficients one picture's (or part's) hashes come from: `wide` is
    it resized to 9x8 (rows x cols = 8x9), `tall` to 8x9 (9x8), `dct_low` the 8x8 lowest
    frequencies of its 32x32 DCT. Every flip and quarter turn hashes from these, so orientation
    variants need no new decode."""

    wide: np.ndarray
    tall: np.ndarray
    dct_low: np.ndarray

    @property
    def signature(self) -> Signature:
        return Signature(horizontal_bits(self.wide), vertical_bits(self.tall), dct_bits(self.dct_low))


@dataclass(frozen=True, slots=True)
class ImageHashes:
    """The hashes of one image: of the whole picture, of its `CENTRE`, and of its `WINDOWS`; and of
    the `alternatives`, the picture cut out of the image otherwise (the `unpadded`, `inset` and
    `cornered` boxes of app/imaging/borders.py, where they differ from the trimmed one and from
    each other).
    A picture padded with the colour of its own edge (a pale sky padded with white) keeps its
    padding in `whole`, since the border trim's edge test cannot tell it from the picture, and a
    picture in a screenshot keeps the app's bars and buttons. The `whole` is the cut that holds
    under brightening; the alternatives are stored beside it (`cuts`) and compared on both sides,
    so that a screenshot stored first is found by its picture as well as the other way round."""

    width: int
    height: int
    whole: Grids
    centre: Grids
    windows: tuple[Grids, ...]
    alternatives: tuple[Grids, ...] = ()

    @property
    def dhash(self) -> int:
        return horizontal_bits(self.whole.wide)

    @property
    def dhash_vertical(self) -> int:
        return vertical_bits(self.whole.tall)

    @property
    def dct_hash(self) -> int:
        return dct_bits(self.whole.dct_low)

    @property
    def signature(self) -> Signature:
        return self.whole.signature

    @property
    def flat(self) -> bool:
        """Whether the picture is one flat tone at the scale of its hashes (`FLAT_SPREAD`)."""
        return int(np.ptp(self.whole.wide)) < FLAT_SPREAD

    @property
    def cuts(self) -> tuple[tuple[int, int, int], ...]:
        """The alternatives' hashes, as a store keeps them (app/models.py Cut)."""
        return tuple(astuple(cut.signature) for cut in self.alternatives)

    @property
    def parts(self) -> Parts:
        return Parts(
            self.signature,
            self.centre.signature,
            tuple(w.signature for w in self.windows),
            tuple(a.signature for a in self.alternatives),
        )


def horizontal_bits(wide: np.ndarray) -> int:
    """dHash bits of an 8x9 grey array: is each pixel brighter than its left neighbour."""
    return pack_bits(wide[:, 1:] > wide[:, :-1])


def vertical_bits(tall: np.ndarray) -> int:
    """Vertical dHash bits of a 9x8 grey array: is each pixel brighter than the one above."""
    return pack_bits(tall[1:, :] > tall[:-1, :])


def low_frequencies(square: np.ndarray) -> np.ndarray:
    """The 8x8 lowest-frequency DCT-II coefficients of the image resized to 32x32 (as pHash,
    scipy's unnormalised `dctn(square)[:8, :8]`), as two small matrix products."""
    coefficients: np.ndarray = _DCT_LOW @ square @ _DCT_LOW.T
    return coefficients


def dct_bits(dct_low: np.ndarray) -> int:
    """DCT hash bits: the sign of each low-frequency coefficient (as pHash, but split at 0
    rather than at the median, so that flips and turns map bits to bits exactly). A coefficient
    that is 0 in exact arithmetic comes out of floating point as a tiny value of either sign:
    such are counted as 0, so that symmetric and flat images hash the same in every orientation."""
    return pack_bits(dct_low > _DCT_ZERO)


def pack_bits(bits: np.ndarray) -> int:
    """Pack a boolean array row by row, first bit most significant, as imagehash's hex does."""
    return int.from_bytes(np.packbits(bits.ravel()).tobytes(), "big")


def hash_hex(value: int) -> str:
    """The 16-digit lower-case hex form of a 64-bit hash, as `str(imagehash.ImageHash)`."""
    return f"{value:016x}"


def parse_hash_hex(text: str) -> int:
    """The 64-bit hash written as exactly 16 hex digits; ValueError otherwise."""
    if _HEX16.fullmatch(text) is None:
        raise ValueError("a hash is exactly 16 hex digits (64 bits)")
    return int(text, 16)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def hash_image_bytes(
    data: bytes,
    *,
    max_pixels: int,
    while_decoding: Callable[[int], AbstractContextManager[object]] = nullcontext,
) -> ImageHashes:
    """Decode `data` as a viewer would and hash it.

    Raises UnsupportedImage (not an image we read), CorruptImage (a known format that does not
    decode) or ImageTooLarge (more than `max_pixels`, or a side over MAX_SIDE, refused before the
    pixels are decoded). The pixels are decoded and hashed inside `while_decoding(cost)`, where
    `cost` is `decode_cost` of the header: a caller can wait for that much memory, or refuse.
    """
    image = open_image(data)
    # From the header, before anything reads the pixels (for a PNG, even reading EXIF does).
    if image.width * image.height > max_pixels:
        raise ImageTooLarge(
            f"image is {image.width}x{image.height} = {image.width * image.height} pixels, "
            f"over the limit of {max_pixels}"
        )
    if max(image.size) > MAX_SIDE:
        raise ImageTooLarge(
            f"image is {image.width}x{image.height}: a side is over the limit of {MAX_SIDE} pixels"
        )
    with while_decoding(decode_cost(image)):
        return _decoded_hashes(image, data)


def decode_cost(image: Image.Image) -> int:
    """The most memory, in bytes, that decoding and hashing `image` (opened, not yet loaded) takes,
    from its header."""
    if image.format in ("JPEG", "MPO"):
        per_pixel = (
            _PROGRESSIVE_JPEG_BYTES_PER_PIXEL.get(image.mode, _DEEP_BYTES_PER_PIXEL)
            if image.info.get("progressive")
            else _JPEG_BYTES_PER_PIXEL
        )
    else:
        per_pixel = max(
            _DECODE_BYTES_PER_PIXEL.get(image.mode, _DEEP_BYTES_PER_PIXEL),
            _DECODE_BYTES_PER_PIXEL_OF_FORMAT.get(image.format or "", 0),
        )
    return image.width * image.height * per_pixel + _DECODE_OVERHEAD_BYTES


def _decoded_hashes(image: Image.Image, data: bytes) -> ImageHashes:
    size = image.size  # before a JPEG draft shrinks it
    try:
        decoded = decode_for_hashing(image, data)
        # Read once decoded: a reader that turns the pixels itself (TIFF's) has cleared the tag.
        orientation = orientation_to_apply(decoded)
        displayed = as_displayed(decoded, orientation)
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, ValueError...) on bad data
        raise CorruptImage(f"the {image.format} image could not be decoded: {exc}") from exc
    width, height = _turned(size, orientation)
    with lent_grey(displayed) as grey:
        cuts = content_cuts(grey)
        picture = grey[_slices(cuts.trimmed)]
        whole = grids_of(picture)
        shrink = min(picture.shape) // PART_SIDE
        small = np.asarray(Image.fromarray(picture).reduce(shrink)) if shrink >= 2 else picture
        return ImageHashes(
            width=width,
            height=height,
            whole=whole,
            centre=grids_of(part_of(small, CENTRE)),
            windows=tuple(grids_of(part_of(small, window)) for window in WINDOWS),
            alternatives=tuple(
                grids_of(grey[_slices(box)]) for box in dict.fromkeys(cuts[1:]) if box != cuts.trimmed
            ),
        )


def _slices(box: Box) -> tuple[slice, slice]:
    top, bottom, left, right = box
    return slice(top, bottom), slice(left, right)


def grids_of(grey: np.ndarray) -> Grids:
    """The three grids of a grey image, in one pass over its pixels. The dHashes compare Pillow's
    8-bit values, as imagehash's do; the DCT reads the 32x32 grid in DCT_GRID_STEPs."""
    wide, tall, square = lanczos_grids(grey, (WIDE, TALL, (DCT_SIDE, DCT_SIDE)))
    steps = np.round(square / DCT_GRID_STEP) * DCT_GRID_STEP
    return Grids(rounded8(wide), rounded8(tall), low_frequencies(steps))


def part_of(grey: np.ndarray, shares: tuple[float, float, float, float]) -> np.ndarray:
    """The part of a grey image within (top, bottom, left, right) shares of its sides; at least
    one pixel each way."""
    height, width = grey.shape
    top, left = round(shares[0] * height), round(shares[2] * width)
    return grey[
        min(top, height - 1) : max(top + 1, round(shares[1] * height)),
        min(left, width - 1) : max(left + 1, round(shares[3] * width)),
    ]


def decode_for_hashing(image: Image.Image, data: bytes) -> Image.Image:
    """Decode only the pixels the 9x8 grid needs: a JPEG at reduced scale (a large progressive
    one from its DC scans alone, which is all a 1/8-scale decode reads), any other image whole.

    `image` is `open_image(data)`.
    """
    if image.format == "JPEG" and min(image.size) >= _JPEG_DC_ONLY_SIDE:
        reduced = dc_scans_only(data)
        if reduced is not None:
            image = Image.open(BytesIO(reduced))
    if image.format == "JPEG":
        image.draft("L" if image.mode in ("L", "RGB") else image.mode, (JPEG_DRAFT_SIDE, JPEG_DRAFT_SIDE))
    image.load()
    return image


def open_image(data: bytes) -> Image.Image:
    """Read the image header (not the pixels). Raises UnsupportedImage or CorruptImage."""
    if not data:
        raise UnsupportedImage("the file is empty")
    try:
        image = Image.open(BytesIO(data), formats=READ_FORMATS)
    except UnidentifiedImageError as exc:
        if sniff_known_format(data):
            raise CorruptImage("the file looks like an image but its header is damaged") from exc
        raise UnsupportedImage(NOT_AN_IMAGE) from exc
    except Exception as exc:  # a decoder plugin choked on a damaged header
        if not sniff_known_format(data):  # a loose match of a plugin's: not an image at all
            raise UnsupportedImage(NOT_AN_IMAGE) from exc
        raise CorruptImage(f"the image header could not be read: {exc}") from exc
    if image.width < 1 or image.height < 1:
        raise CorruptImage("the image has no pixels")
    return image


def sniff_known_format(data: bytes) -> bool:
    """Whether `data` starts with the signature of a format Doppel reads."""
    return _looks_like_bmp(data) or any(
        data[offset : offset + len(magic)] == magic for offset, magic in _SIGNATURES
    )


def _looks_like_bmp(data: bytes) -> bool:
    # "BM" alone starts too much text ("BMW..."): also ask for a known DIB header size.
    return data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES


def _turned(size: tuple[int, int], orientation: int) -> tuple[int, int]:
    """Width and height as displayed, after the EXIF orientation."""
    width, height = size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)  # these turn a quarter


def as_displayed(image: Image.Image, orientation: int) -> Image.Image:
    """The loaded `image` as a viewer shows it, in L or RGB (grey to come, see write_grey): first
    frame, transparency flattened onto white, EXIF `orientation` (1-8, read once by the caller)
    applied. Every step before the turn works pixel by pixel, so an image that turns does so once
    grey: one byte a pixel to move rather than four."""
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        image = _high_bit_depth_to_grey(image)
    elif has_transparency(image):
        image = _flattened(image)
    elif image.mode == "LAB":  # Pillow has no LAB to grey; to RGB it goes through a colour profile
        image = image.convert("RGB")
    elif image.mode == "P" and image.palette is not None and image.palette.mode == "RGB":
        image = _looked_up(image, _palette_entries(image))
    elif image.mode not in ("L", "RGB"):
        image = image.convert("L")
    if orientation in _ORIENTATION_TRANSPOSE:
        image = upright(image if image.mode == "L" else image.convert("L"), orientation)
    return image


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """The image turned and flipped as its EXIF `orientation` (1-8) says a viewer shows it; the
    same image when upright."""
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    return image if method is None else image.transpose(method)


def _flattened(image: Image.Image) -> Image.Image:
    """An image with transparency flattened onto white: L, or RGB for colour with alpha."""
    if image.mode == "P":
        return _looked_up(image, _flattened_palette(image))
    return on_white(image)


def _looked_up(image: Image.Image, entries: Image.Image) -> Image.Image:
    """The grey of a palette image, each pixel's looked up from the 256 `entries` (256x1) of its
    palette: one byte a pixel rather than three, and twice as fast as Pillow's P to L, which
    weighs the three channels again at every pixel (the same values: the same weights)."""
    grey = image.point(list(entries.convert("L").tobytes()), "L")
    grey.info.pop("transparency", None)  # copied along: it named a palette entry, not a grey
    return grey


@contextmanager
def lent_grey(image: Image.Image) -> Iterator[np.ndarray]:
    """The grey of an L or RGB image (write_grey's) in an array lent from the scratch pool: the
    caller's until the block ends, not after."""
    with SCRATCH.lend((image.height, image.width), np.uint8) as grey:
        write_grey(image, grey)
        yield grey


def write_grey(image: Image.Image, pixels: np.ndarray) -> None:
    """Write the grey of an L or RGB image, as `convert("L")` computes it, into the uint8 array of
    its size (rows x cols). Pillow writes it straight into the array: numpy cannot view Pillow's
    memory, and a grey copy made by Pillow then copied by numpy cost a third of the resize on a
    large photo (10 of 31 ms at 16 MP). The target is a Pillow image over the array's memory
    (`frombuffer` maps an L buffer rather than copying it); Pillow checks that the sizes match."""
    rows, cols = pixels.shape
    image.im.convert_into(Image.frombuffer("L", (cols, rows), pixels, "raw", "L", 0, 1).im)


def on_white(image: Image.Image) -> Image.Image:
    """The image flattened onto a white background: L for grey images with alpha, else RGB.

    The same values as `Image.alpha_composite` onto opaque white, then dropping alpha (a masked
    paste blends with the same rounding, checked for every value and alpha), in about half the
    time; a palette image flattens its 256 colours instead of its pixels.
    """
    if image.mode == "P":
        opaque = image.copy()
        del opaque.info["transparency"]
        opaque.putpalette(_flattened_palette(image).tobytes(), "RGB")
        return opaque.convert("RGB")
    if image.mode == "LA":
        background = Image.new("L", image.size, 255)
    else:
        image = image if image.mode == "RGBA" else image.convert("RGBA")
        background = Image.new("RGB", image.size, _WHITE)
    background.paste(image, mask=image)  # the mask is the alpha band
    return background


def _flattened_palette(image: Image.Image) -> Image.Image:
    """The 256 entries of a palette image with transparency, flattened onto white (RGB, 256x1).

    A pixel's flattened colour depends only on its palette index, so one pixel of each index goes
    through the RGBA path of on_white (the same values as the whole image would get)."""
    entries = _palette_entries(image)
    entries.info["transparency"] = image.info["transparency"]
    return on_white(entries.convert("RGBA"))


def _palette_entries(image: Image.Image) -> Image.Image:
    """A 256x1 palette image of the indices 0-255 in turn, with the palette of `image`."""
    if image.palette is None:  # P and PA images have one
        raise ValueError(f"a {image.mode} image without a palette")
    entries = Image.frombytes("P", (256, 1), bytes(range(256)))
    entries.putpalette(image.getpalette(image.palette.mode) or [], image.palette.mode)
    return entries


def orientation_to_apply(image: Image.Image) -> int:
    """The EXIF (or XMP) orientation still to apply to a loaded image, 1-8: 1 (upright) when
    absent or unreadable. (Pillow's TIFF reader turns the pixels itself while loading, opens with
    the size as displayed, and then drops the tag.)"""
    try:
        return int(image.getexif().get(ORIENTATION_TAG, UPRIGHT))
    except Exception:  # a damaged EXIF block must not refuse an image that decodes
        return UPRIGHT


def has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _high_bit_depth_to_grey(image: Image.Image) -> Image.Image:
    # Pillow's convert("L") and convert("RGBA") clip 16-bit values at 255 (a white image): scale
    # them instead, and flatten the one transparent value (PNG tRNS) onto white by hand.
    raw = np.asarray(image)
    pixels = raw.astype(np.float64)
    if pixels.max(initial=0) > 255:
        pixels = pixels / 257
    if "transparency" in image.info:
        pixels = np.where(raw == image.info["transparency"], 255.0, pixels)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8), "L")
