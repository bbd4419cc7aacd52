"""Accuracy evaluation: edited copies of folders of distinct originals, searched through the service.

`python main.py eval DIR...` splits the images in two halves by a hash of their names (`half_of`):
thresholds are chosen on the tuning half and read on the held-out one. For each half it indexes
that half's originals in an in-memory service, makes 48 edited copies of each (resizes,
re-encodes, colour filters, captions, logos, borders, screenshots, crops, flips, turns...),
searches every copy and every original (and every 5th image, not indexed, as a distinct one),
and prints recall per edit and the number of wrong matches for plain dHash, for the default
(scored) matches and with all orientations. A GROUPS.tsv in a folder (as in shared/images/natural)
marks the real duplicates shipped there: its `kept` files are originals, the others extra queries.
"""

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from app.config import Settings
from app.errors import DoppelError
from app.imaging import has_transparency, on_white
from app.service import DoppelService, build_service
from app.service.matching import SearchOptions, query_of_upload, score
from app.store import MemoryImageStore

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif"}
Edit = Callable[[Image.Image], bytes]


def _save(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        options = {"quality": 90} | options
    elif fmt == "PNG":
        options = {"compress_level": 1} | options  # the same pixels, 5x faster to write
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    return image.resize(
        (max(1, round(image.width * factor)), max(1, round(image.height * factor))), Image.Resampling.LANCZOS
    )


def _watermark(image: Image.Image) -> Image.Image:
    marked = image.convert("RGBA")
    layer = Image.new("RGBA", marked.size, (0, 0, 0, 0))
    size = max(12, image.height // 12)
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(layer)
    text = "(c) doppel sample"
    box = draw.textbbox((0, 0), text, font=font)
    position = (image.width - (box[2] - box[0]) - size, image.height - (box[3] - box[1]) - size)
    draw.text(
        position,
        text,
        font=font,
        fill=(255, 255, 255, 160),
        stroke_width=max(1, size // 12),
        stroke_fill=(0, 0, 0, 160),
    )
    return Image.alpha_composite(marked, layer).convert("RGB")


def _outlined_text(image: Image.Image, lines: list[tuple[str, float]], share: float) -> Image.Image:
    """White text with a black outline, each line centred at its height (a share of the picture's)."""
    marked = image.copy()
    draw = ImageDraw.Draw(marked)
    size = max(10, round(image.height * share))
    font = ImageFont.load_default(size=size)
    for text, at in lines:
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        position = ((image.width - (right - left)) // 2, round(image.height * at - (bottom - top) / 2))
        draw.text(
            position, text, font=font, fill="white", stroke_width=max(1, size // 10), stroke_fill="black"
        )
    return marked


def _caption_bar(image: Image.Image) -> Image.Image:
    """An opaque dark box of text in the bottom-left corner, about 4% of the picture."""
    marked = image.copy()
    width, height = round(image.width * 0.32), round(image.height * 0.12)
    draw = ImageDraw.Draw(marked)
    draw.rectangle((0, image.height - height, width, image.height), fill=(20, 20, 30))
    font = ImageFont.load_default(size=max(8, height // 3))
    draw.text((height // 4, image.height - height * 3 // 4), "@reposter 2d ago", font=font, fill="white")
    return marked


def _logo(image: Image.Image) -> Image.Image:
    """A channel logo in the top-right corner: an opaque coloured badge with letters, ~2%."""
    marked = image.copy()
    side = round(min(image.size) * 0.14)
    margin = side // 4
    box = (image.width - side * 3 // 2 - margin, margin, image.width - margin, margin + side)
    draw = ImageDraw.Draw(marked)
    draw.rounded_rectangle(box, radius=side // 5, fill=(220, 30, 40))
    draw.text(
        (box[0] + side // 5, box[1] + side // 5),
        "TV",
        font=ImageFont.load_default(size=side // 2),
        fill="white",
    )
    return marked


def _sticker(image: Image.Image) -> Image.Image:
    """A round yellow sticker with a face near the bottom-right corner, ~3%."""
    marked = image.copy()
    radius = round(min(image.size) * 0.1)
    cx, cy = image.width - 2 * radius, image.height - 2 * radius
    draw = ImageDraw.Draw(marked)
    draw.ellipse(
        (cx - radius, cy - radius, cx + radius, cy + radius),
        fill=(250, 210, 40),
        outline="black",
        width=max(1, radius // 12),
    )
    eye = max(1, radius // 6)
    for dx in (-radius // 3, radius // 3):
        draw.ellipse(
            (cx + dx - eye, cy - radius // 3 - eye, cx + dx + eye, cy - radius // 3 + eye), fill="black"
        )
    draw.arc(
        (cx - radius // 2, cy - radius // 3, cx + radius // 2, cy + radius // 2),
        20,
        160,
        fill="black",
        width=max(1, radius // 10),
    )
    return marked


def _framed(image: Image.Image, share: float, colour: str | tuple[int, int, int]) -> Image.Image:
    """A frame of one colour around the picture, each side `share` of its shorter side."""
    border = max(1, round(min(image.size) * share))
    return ImageOps.expand(image, border=border, fill=colour)


def _letterbox(image: Image.Image) -> Image.Image:
    """Black bars above and below, each 10% of the height, as a 16:9 frame would add."""
    bar = round(image.height * 0.1)
    return ImageOps.expand(image, border=(0, bar, 0, bar), fill="black")


def _pillarbox(image: Image.Image) -> Image.Image:
    """Black bars left and right, each 15% of the width, as a portrait video frame would add."""
    bar = round(image.width * 0.15)
    return ImageOps.expand(image, border=(bar, 0, bar, 0), fill="black")


def _video_frame(image: Image.Image) -> Image.Image:
    """The picture in a black 16:9 frame (bars left and right of a portrait picture, above and
    below a panorama), as a video or a landscape preview shows it."""
    width, height = image.size
    size = (width, round(width * 9 / 16)) if width * 9 > height * 16 else (round(height * 16 / 9), height)
    frame = Image.new("RGB", size, "black")
    frame.paste(image, ((size[0] - width) // 2, (size[1] - height) // 2))
    return frame


def _padded_square(image: Image.Image) -> Image.Image:
    """White padding to a square, the picture centred (as a square feed crops nothing)."""
    side = max(image.size)
    square = Image.new("RGB", (side, side), "white")
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    return square


def _screenshot(image: Image.Image) -> Image.Image:
    """The picture in a phone screenshot: status bar, app bar with a name, a caption and buttons below."""
    unit = max(8, image.width // 20)
    screen = Image.new("RGB", (image.width, image.height + 9 * unit), (250, 250, 250))
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, image.width, unit), fill=(30, 30, 30))
    font = ImageFont.load_default(size=max(8, unit * 2 // 3))
    draw.text((unit // 2, unit // 8), "9:41", font=font, fill="white")
    draw.text((image.width - 4 * unit, unit // 8), "87%", font=font, fill="white")
    draw.ellipse((unit // 2, 1.5 * unit, 2.5 * unit, 3.5 * unit), fill=(120, 160, 220))
    draw.text((3 * unit, 2 * unit), "some.account", font=font, fill="black")
    screen.paste(image, (0, 4 * unit))
    below = image.height + 4 * unit
    for i in range(3):
        draw.ellipse(
            (unit // 2 + 2 * i * unit, below + unit // 2, 2 * i * unit + 2 * unit, below + 2 * unit),
            outline="black",
            width=2,
        )
    draw.text((unit // 2, below + 2.5 * unit), "1,024 likes  great shot!", font=font, fill="black")
    draw.rectangle((0, below + 4 * unit, image.width, below + 5 * unit), fill=(240, 240, 240))
    return screen


def _tone(image: Image.Image, curve: Callable[[int], float], tint: tuple[float, float, float]) -> Image.Image:
    """A tone curve on every channel, then each channel scaled by `tint`."""
    lut = [min(255, max(0, round(curve(v) * t))) for t in tint for v in range(256)]
    return image.point(lut)


def _vignette(image: Image.Image, strength: float) -> Image.Image:
    """Darker corners: the picture blended with black through a radial mask."""
    mask = Image.radial_gradient("L").resize(image.size)  # 0 at the centre, 255 at the edges
    mask = mask.point(lambda v: round(v * strength))
    return Image.composite(Image.new("RGB", image.size, "black"), image, mask)


def _filter_warm(image: Image.Image) -> Image.Image:
    """A warm, faded look (lifted blacks, orange tint), as Instagram's Valencia-like filters."""
    return _tone(image, lambda v: 30 + v * 0.85, (1.08, 1.0, 0.85))


def _filter_vivid(image: Image.Image) -> Image.Image:
    """Punchy colour and contrast with a vignette, as Clarendon-like filters."""
    punchy = ImageEnhance.Color(ImageEnhance.Contrast(image).enhance(1.35)).enhance(1.4)
    return _vignette(punchy, 0.3)


def _filter_mono(image: Image.Image) -> Image.Image:
    """Sepia-toned black and white with low contrast, as an old-photo filter."""
    grey = ImageOps.grayscale(ImageEnhance.Contrast(image).enhance(0.8))
    return ImageOps.colorize(grey, black=(40, 26, 13), white=(255, 240, 200))


def _crop(
    image: Image.Image, fraction: float, *, share_left: float = 0.5, share_top: float = 0.5
) -> Image.Image:
    """Cut `fraction` of the width and of the height, `share_left` of it from the left side (the
    rest from the right) and `share_top` from the top."""
    cut_x, cut_y = image.width * fraction, image.height * fraction
    left, top = round(cut_x * share_left), round(cut_y * share_top)
    return image.crop((left, top, left + image.width - round(cut_x), top + image.height - round(cut_y)))


T = Image.Transpose
# name -> (kind, edit). Kinds: "benign" edits must keep recall, "border" and "overlay" ones too (a
# frame around the picture, an app's bars and buttons included; text, a logo or a sticker over a
# corner of it); "crop" and "hard" ones change the picture's frame; "orientation" ones need
# all_orientations.
EDITS: dict[str, tuple[str, Edit]] = {
    "resize 50%": ("benign", lambda im: _save(_scaled(im, 0.5))),
    "resize 200%": ("benign", lambda im: _save(_scaled(im, 2.0))),
    "resize 25% then back up": ("benign", lambda im: _save(_scaled(_scaled(im, 0.25), 4.0))),
    "thumbnail 160 px": ("benign", lambda im: _save(ImageOps.contain(im, (160, 160)), quality=80)),
    "thumbnail 64 px": ("benign", lambda im: _save(ImageOps.contain(im, (64, 64)), "PNG")),
    "jpeg quality 70": ("benign", lambda im: _save(im, quality=70)),
    "jpeg quality 30": ("benign", lambda im: _save(im, quality=30)),
    "jpeg quality 10": ("benign", lambda im: _save(im, quality=10)),
    "jpeg re-saved 3 times at 60-80": (
        "benign",
        lambda im: _save(viewed(_save(viewed(_save(im, quality=80)), quality=70)), quality=60),
    ),
    "png": ("benign", lambda im: _save(im, "PNG")),
    "webp": ("benign", lambda im: _save(im, "WEBP", quality=80)),
    "greyscale": ("benign", lambda im: _save(ImageOps.grayscale(im))),
    "brightness +25%": ("benign", lambda im: _save(ImageEnhance.Brightness(im).enhance(1.25))),
    "contrast +30%": ("benign", lambda im: _save(ImageEnhance.Contrast(im).enhance(1.3))),
    "saturation +50%": ("benign", lambda im: _save(ImageEnhance.Color(im).enhance(1.5))),
    "filter: warm and faded": ("benign", lambda im: _save(_filter_warm(im))),
    "filter: vivid with vignette": ("benign", lambda im: _save(_filter_vivid(im))),
    "filter: sepia": ("benign", lambda im: _save(_filter_mono(im))),
    "gaussian blur": (
        "benign",
        lambda im: _save(im.filter(ImageFilter.GaussianBlur(max(1, im.width / 400)))),
    ),
    "sharpen": ("benign", lambda im: _save(im.filter(ImageFilter.SHARPEN))),
    "aspect 4:3 -> squashed 80%": (
        "benign",
        lambda im: _save(im.resize((im.width, max(1, round(im.height * 0.8))))),
    ),
    "crop 5%": ("benign", lambda im: _save(_crop(im, 0.05))),
    "crop 5% off-centre": ("benign", lambda im: _save(_crop(im, 0.05, share_left=0.8, share_top=0.1))),
    "text watermark": ("overlay", lambda im: _save(_watermark(im))),
    "caption bar in a corner": ("overlay", lambda im: _save(_caption_bar(im))),
    "subtitle": ("overlay", lambda im: _save(_outlined_text(im, [("and that is how it ended", 0.9)], 0.06))),
    "meme text top and bottom": (
        "overlay",
        lambda im: _save(_outlined_text(im, [("WHEN THE EVAL", 0.08), ("HOLDS OUT", 0.92)], 0.1)),
    ),
    "logo in a corner": ("overlay", lambda im: _save(_logo(im))),
    "sticker": ("overlay", lambda im: _save(_sticker(im))),
    "caption bar over a white frame 5%": (
        "overlay",
        lambda im: _save(_caption_bar(_framed(im, 0.05, "white"))),
    ),
    "letterbox": ("border", lambda im: _save(_letterbox(im))),
    "pillarbox": ("border", lambda im: _save(_pillarbox(im))),
    "white frame 5%": ("border", lambda im: _save(_framed(im, 0.05, "white"))),
    "black frame 2%": ("border", lambda im: _save(_framed(im, 0.02, "black"))),
    "red frame 10%": ("border", lambda im: _save(_framed(im, 0.10, (200, 30, 30)), "PNG")),
    "grey frame 1%": ("border", lambda im: _save(_framed(im, 0.01, (128, 128, 128)))),
    "white padding to a square": ("border", lambda im: _save(_padded_square(im))),
    "in a 16:9 video frame": ("border", lambda im: _save(_video_frame(im))),
    "screenshot with app chrome": ("border", lambda im: _save(_screenshot(im), "PNG")),
    "crop 10%": ("crop", lambda im: _save(_crop(im, 0.10))),
    "crop 10% off-centre": ("crop", lambda im: _save(_crop(im, 0.10, share_left=0.2, share_top=0.9))),
    "crop 15% off-centre": ("crop", lambda im: _save(_crop(im, 0.15, share_left=1.0, share_top=0.3))),
    "rotate 2 degrees": ("hard", lambda im: _save(im.rotate(2, resample=Image.Resampling.BICUBIC))),
    "flip horizontal": ("orientation", lambda im: _save(im.transpose(T.FLIP_LEFT_RIGHT))),
    "flip vertical": ("orientation", lambda im: _save(im.transpose(T.FLIP_TOP_BOTTOM))),
    "rotate 90": ("orientation", lambda im: _save(im.transpose(T.ROTATE_270))),  # PIL turns counter-clockwise
    "rotate 180": ("orientation", lambda im: _save(im.transpose(T.ROTATE_180))),
    "rotate 270": ("orientation", lambda im: _save(im.transpose(T.ROTATE_90))),
}

# label -> search options; the reported figures for each.
MODES: dict[str, SearchOptions] = {
    "plain dHash": SearchOptions(confirm=False),
    "default": SearchOptions(confirm=True),
    "all orientations": SearchOptions(confirm=True, all_orientations=True),
}
# The default search the other way round: every copy stored (in a service of its own), each original
# searched. A copy is often seen first (a repost before the original), and found then only if its
# stored hashes hold what the original's search looks for.
STORED_FIRST = "copy stored first"
STORED_FIRST_OPTIONS = SearchOptions(limit=None)
HALVES = ("tune", "held-out")
BENIGN_KINDS = ("benign", "overlay", "border")
# The originals named with the count of their benign copies the default missed: where a figure
# short of 100% is one picture's.
MOST_MISSED = 5
# Edits are made from the picture shrunk to at most this side: a reposted copy is rarely larger,
# and encoding 40 copies of a 24-megapixel photo would take most of the run.
EDIT_SIDE = 1024


@dataclass
class EvalQuery:
    """One image searched: its expected original (None for a distinct image) and how it was made."""

    name: str
    expected: str | None
    edit: str
    kind: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Candidate:
    """A plain dHash candidate's distances (None: unknown), and whether it is the right original."""

    distance: int
    vertical_distance: int | None
    dct_distance: int | None
    right: bool


@dataclass
class Report:
    """The figures of one half of the originals."""

    found: dict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )  # mode -> edit -> hits
    total: Counter[str] = field(default_factory=Counter)  # edit -> queries
    kinds: dict[str, str] = field(default_factory=dict)  # edit -> kind
    wrong: dict[str, Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter)
    )  # mode -> source -> count
    wrong_pairs: dict[str, set[frozenset[str]]] = field(
        default_factory=lambda: defaultdict(set)
    )  # mode -> pairs
    candidates: list[Candidate] = field(default_factory=list)  # every plain dHash candidate, to tune on
    refused: Counter[str] = field(default_factory=Counter)  # edit -> queries the service refused
    missed: Counter[str] = field(
        default_factory=Counter
    )  # original -> benign-kind copies not found by default
    skipped: list[str] = field(default_factory=list)  # originals the service refused to index
    flat: list[str] = field(default_factory=list)  # originals of one flat tone (ImageHashes.flat)
    # the same counts for the copies of the flat originals alone
    flat_found: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    flat_total: Counter[str] = field(default_factory=Counter)
    originals: int = 0
    distinct: int = 0

    def count_query(self, edit: str, original: str | None) -> None:
        """One copy of `original` searched (made by `edit`)."""
        self.total[edit] += 1
        if original in self.flat:
            self.flat_total[edit] += 1

    def count_found(self, mode: str, edit: str, original: str | None) -> None:
        """A copy of `original` (made by `edit`) found in `mode`."""
        self.found[mode][edit] += 1
        if original in self.flat:
            self.flat_found[mode][edit] += 1


def half_of(name: str) -> str:
    """The half a file belongs to, by the first bit of the SHA-256 of its name: the same file is
    always in the same half, whatever else the folder holds."""
    return HALVES[sha256(name.encode()).digest()[0] & 1]


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def viewed(data: bytes) -> Image.Image:
    """The image as a viewer shows it (orientation applied, transparency on white), in RGB."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    return (on_white(image) if has_transparency(image) else image).convert("RGB")


def edited_copies(original: tuple[str, Path]) -> list[EvalQuery]:
    """Every edit of one original, by id and path (run in worker processes: encoding dominates)."""
    image_id, path = original
    image = ImageOps.contain(viewed(path.read_bytes()), (EDIT_SIDE, EDIT_SIDE), Image.Resampling.LANCZOS)
    return [EvalQuery(image_id, image_id, name, kind, edit(image)) for name, (kind, edit) in EDITS.items()]


@dataclass
class Half:
    """One half's originals (id -> file), shipped duplicates and distinct images."""

    originals: dict[str, Path] = field(default_factory=dict)
    shipped: list[EvalQuery] = field(default_factory=list)
    distinct: list[Path] = field(default_factory=list)


def split(folders: list[Path], distinct_folders: list[Path], hold_out_every: int) -> dict[str, Half]:
    """The files of `folders`, each in its half (`half_of` its name). Each image is indexed as an
    original, its id the folder's and file's names, except every `hold_out_every`-th of a folder,
    searched as a distinct image; a folder with a GROUPS.tsv (as shared/images/natural) gives its
    `kept` files as originals and its other files as shipped duplicates of them. The images of
    `distinct_folders` are all searched as distinct images."""
    halves = {half: Half() for half in HALVES}
    for path in (path for folder in distinct_folders for path in image_files(folder)):
        halves[half_of(path.name)].distinct.append(path)
    for folder in folders:
        groups = _read_groups(folder / "GROUPS.tsv")
        if groups:
            kept_of = {row["group_id"]: row["file"] for row in groups if row["role"] == "kept"}
            for row in groups:
                kept = kept_of[row["group_id"]]
                half, image_id = halves[half_of(kept)], f"{folder.name}:{kept}"
                if row["role"] == "kept":
                    half.originals[image_id] = folder / kept
                else:
                    data = (folder / row["file"]).read_bytes()
                    relation = f"shipped: {row['relation']}"
                    half.shipped.append(EvalQuery(row["file"], image_id, relation, "shipped", data))
            continue
        for number, path in enumerate(image_files(folder), start=1):
            half = halves[half_of(path.name)]
            if hold_out_every and number % hold_out_every == 0:
                half.distinct.append(path)
            else:
                half.originals[f"{folder.name}:{path.name}"] = path
    return halves


def evaluate(
    folders: list[Path],
    *,
    distinct_folders: list[Path],
    hold_out_every: int,
    max_distance: int,
    max_score: float,
    workers: int = 2,
) -> dict[str, Report]:
    """Each half's figures, from a service of its own that indexes only that half's originals."""
    settings = Settings(
        max_distance=max_distance,
        max_score=max_score,
        max_pixels=10**9,
        max_concurrent_decodes=1,  # it searches one query at a time
        thumbnails=False,
        duplicate_groups=False,
    )
    reports = {}
    for name, half in split(folders, distinct_folders, hold_out_every).items():
        originals, copies = (build_service(settings, store=MemoryImageStore()) for _ in range(2))
        originals.start()
        copies.start()
        try:
            reports[name] = _evaluate(originals, copies, half, workers)
        finally:
            originals.close()
            copies.close()
    return reports


def _evaluate(service: DoppelService, copies_service: DoppelService, half: Half, workers: int) -> Report:
    """One half's figures: `service` indexes its originals, `copies_service` its copies."""
    report = Report()
    indexed = []
    for image_id, path in half.originals.items():
        try:
            added = service.ingest.add(path.read_bytes(), image_id=image_id, metadata={})
            indexed.append((image_id, path))
            if added.flat:
                report.flat.append(image_id)
        except DoppelError as exc:
            report.skipped.append(f"{image_id}: {exc.detail}")
    report.originals = len(indexed)

    # Originals against each other: every match is a wrong one (each pair is seen from both sides).
    for image_id, _ in indexed:
        for label, options in MODES.items():
            _, matches = service.matching.duplicates_of(image_id, options=options)
            report.wrong[label]["originals (pairs)"] += len(matches) / 2  # type: ignore[assignment]
            report.wrong_pairs[label].update(frozenset((image_id, m.record.id)) for m in matches)
    stored: list[EvalQuery] = []  # the copies in copies_service, each under its number as id
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for copies in pool.map(edited_copies, indexed):
            for query in copies:
                _search(service, query, report)
                _store(copies_service, query, stored)
    for query in half.shipped:
        _search(service, query, report)
        _store(copies_service, query, stored)
    distinct = [
        EvalQuery(path.name, None, "distinct (held out)", "distinct", path.read_bytes())
        for path in half.distinct
    ]
    for query in distinct:
        _search(service, query, report)
    originals = [EvalQuery(image_id, image_id, "", "original", p.read_bytes()) for image_id, p in indexed]
    for query in originals + distinct:
        _search_copies(copies_service, query, stored, report)
    return report


def _store(service: DoppelService, query: EvalQuery, stored: list[EvalQuery]) -> None:
    try:
        service.ingest.add(query.data, image_id=str(len(stored)), metadata={})
    except DoppelError:
        return  # refused: counted as not found, as its search is
    stored.append(query)


def _search_copies(service: DoppelService, query: EvalQuery, stored: list[EvalQuery], report: Report) -> None:
    """Search an original (or a distinct image) among the stored copies."""
    _, matches = service.matching.search(query.data, options=STORED_FIRST_OPTIONS)
    copies = [stored[int(match.record.id)] for match in matches]
    for copy in copies:
        if copy.expected == query.expected:
            report.count_found(STORED_FIRST, copy.edit, copy.expected)
    wrong = [copy for copy in copies if copy.expected != query.expected]
    by = "held-out distinct images" if query.kind == "distinct" else "originals against stored copies"
    report.wrong[STORED_FIRST][by] += len(wrong)
    report.wrong_pairs[STORED_FIRST].update(frozenset((query.name, str(copy.expected))) for copy in wrong)


def _search(service: DoppelService, query: EvalQuery, report: Report) -> None:
    if query.kind == "distinct":
        report.distinct += 1
    else:
        report.count_query(query.edit, query.expected)
        report.kinds[query.edit] = query.kind
    try:
        upload = service.matching.hasher.hash(query.data)
    except DoppelError:
        report.refused[query.edit] += 1  # counted, and not found
        if query.expected is not None and query.kind in BENIGN_KINDS:
            report.missed[query.expected] += 1
        return
    found = query_of_upload(upload)
    for label, options in MODES.items():
        matches = service.matching.find(found, options)
        if query.expected is not None and any(m.record.id == query.expected for m in matches):
            report.count_found(label, query.edit, query.expected)
        elif label == "default" and query.kind in BENIGN_KINDS:
            report.missed[query.expected or query.name] += 1
        source = "held-out distinct images" if query.kind == "distinct" else "edited copies"
        wrong = [m.record.id for m in matches if m.record.id != query.expected]
        report.wrong[label][source] += len(wrong)
        report.wrong_pairs[label].update(frozenset((query.expected or query.name, w)) for w in wrong)
        if label == "plain dHash":
            report.candidates += [
                Candidate(m.distance, m.vertical_distance, m.dct_distance, m.record.id == query.expected)
                for m in matches
            ]


def _read_groups(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def format_report(reports: dict[str, Report], *, max_score: float) -> str:
    """Markdown: for each half, recall per edit and mode and wrong matches; then the score sweep
    over both halves' plain dHash candidates (the threshold is chosen on the tuning half's)."""
    lines = [f"Score threshold (DOPPEL_MAX_SCORE) {max_score:g}.", ""]
    for name, report in reports.items():
        lines += [f"### {name} half", "", *_half_tables(report), ""]
    lines += [
        "Score sweep over the plain dHash candidates (right kept / wrong kept), tuning and held-out halves:",
        "",
        "| score at most | " + " | ".join(f"{h} right | {h} wrong" for h in reports) + " |",
        "|---:|" + "---:|---:|" * len(reports),
    ]
    for threshold in range(4, 17):
        cells = []
        for report in reports.values():
            kept = [
                c
                for c in report.candidates
                if score(c.distance, c.vertical_distance, c.dct_distance) <= threshold
            ]
            right = sum(c.right for c in report.candidates)
            cells.append(f"{sum(c.right for c in kept)}/{right} | {sum(not c.right for c in kept)}")
        lines.append(f"| {threshold} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _recall_row(
    label: str, edits: list[str], total: Counter[str], found: Mapping[str, Counter[str]], modes: list[str]
) -> list[str]:
    """The bold row of recall over `edits` in each of `modes`; none when no copy of them was searched."""
    searched = sum(total[e] for e in edits)
    if not searched:
        return []
    cells = [f"**{100 * sum(found[m][e] for e in edits) / searched:.1f}%**" for m in modes]
    return [f"| **{label}** | | " + " | ".join(cells) + " |"]


def _half_tables(report: Report) -> list[str]:
    modes = [*MODES, STORED_FIRST]
    lines = [
        f"{report.originals} originals indexed, {sum(report.total.values())} copies searched, "
        f"{report.distinct} held-out distinct images.",
        *(f"skipped (not indexed) {reason}" for reason in report.skipped),
        *(
            f"refused by the service: {count} of the '{edit}' copies (counted as not found)"
            for edit, count in report.refused.items()
        ),
        "",
        "| edit | kind | " + " | ".join(f"{m} recall" for m in modes) + " |",
        "|---|---|" + "---:|" * len(modes),
    ]
    for edit in report.total:
        cells = [f"{100 * report.found[m][edit] / report.total[edit]:.1f}%" for m in modes]
        lines.append(f"| {edit} | {report.kinds[edit]} | " + " | ".join(cells) + " |")

    def of_kinds(kinds: tuple[str, ...]) -> list[str]:
        return [e for e in report.total if report.kinds[e] in kinds]

    summaries = [(f"all {kind} edits", (kind,)) for kind in ("overlay", "border", "crop", "orientation")]
    for label, kinds in [("all benign edits (benign, overlay, border)", BENIGN_KINDS), *summaries]:
        lines += _recall_row(label, of_kinds(kinds), report.total, report.found, modes)
    if report.flat:
        total = report.total - report.flat_total
        found = {m: report.found[m] - report.flat_found[m] for m in modes}
        for label, kinds in [("all benign edits", BENIGN_KINDS), ("all overlay edits", ("overlay",))]:
            lines += _recall_row(f"{label}, flat pictures left out", of_kinds(kinds), total, found, modes)
        flat = ", ".join(report.flat)
        lines += ["", f"Flat pictures (one tone at the scale of the hashes, `flat` in a search): {flat}."]
    if report.missed:
        most = ", ".join(f"{name} {count}" for name, count in report.missed.most_common(MOST_MISSED))
        lines += ["", f"Benign copies missed by default, by original (most missed first): {most}."]
    sources = sorted({s for m in modes for s in report.wrong[m]})
    lines += ["", "| wrong matches | " + " | ".join(modes) + " |", "|---|" + "---:|" * len(modes)]
    for source in sources:
        lines.append(f"| {source} | " + " | ".join(f"{report.wrong[m][source]:g}" for m in modes) + " |")
    lines.append(
        "| **total** | " + " | ".join(f"**{sum(report.wrong[m].values()):g}**" for m in modes) + " |"
    )
    lines.append(
        "| distinct image pairs among them | "
        + " | ".join(f"{len(report.wrong_pairs[m])}" for m in modes)
        + " |"
    )
    return lines
