"""Accuracy evaluation: edited copies of a folder of distinct originals, searched through the service.

`python main.py eval DIR` indexes the originals in an in-memory service, makes ~20 edited copies of
each (resize, re-encode, colour, blur, watermark, crops, flips, rotations...), searches every copy
and every original (and, with --distinct, a held-out folder of other images), and prints recall per
edit and the number of wrong matches for plain dHash, for confirmed matches and with all
orientations. A GROUPS.tsv in DIR (as in shared/images/natural) marks the real duplicates shipped
there: its `kept` files are the originals and its `dup` files become extra queries.
"""

import csv
import io
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

from app.config import Settings
from app.errors import DoppelError
from app.imaging import has_transparency, on_white
from app.models import Match
from app.service import DoppelService, build_service
from app.service.matching import SearchOptions, query_of_upload
from app.store import MemoryImageStore

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif"}
Edit = Callable[[Image.Image], bytes]


def _save(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        options = {"quality": 90} | options
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _scaled(image: Image.Image, factor: float) -> Image.Image:
    return image.resize(
        (max(1, round(image.width * factor)), max(1, round(image.height * factor))), Image.Resampling.LANCZOS
    )


def _crop(image: Image.Image, fraction: float) -> Image.Image:
    """Cut `fraction` of the width and of the height, half from each side."""
    dx, dy = round(image.width * fraction / 2), round(image.height * fraction / 2)
    return image.crop((dx, dy, image.width - dx, image.height - dy))


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


def _letterbox(image: Image.Image) -> Image.Image:
    """Black bars above and below, each 10% of the height, as a 16:9 frame would add."""
    bar = round(image.height * 0.1)
    framed = Image.new("RGB", (image.width, image.height + 2 * bar), "black")
    framed.paste(image, (0, bar))
    return framed


T = Image.Transpose
# name -> (kind, edit). Kinds: "benign" edits must keep recall; "hard" ones change the picture's
# frame; "orientation" ones need all_orientations.
EDITS: dict[str, tuple[str, Edit]] = {
    "resize 50%": ("benign", lambda im: _save(_scaled(im, 0.5))),
    "resize 200%": ("benign", lambda im: _save(_scaled(im, 2.0))),
    "resize 25% then back up": ("benign", lambda im: _save(_scaled(_scaled(im, 0.25), 4.0))),
    "jpeg quality 30": ("benign", lambda im: _save(im, quality=30)),
    "png": ("benign", lambda im: _save(im, "PNG")),
    "webp": ("benign", lambda im: _save(im, "WEBP", quality=80)),
    "greyscale": ("benign", lambda im: _save(ImageOps.grayscale(im))),
    "brightness +25%": ("benign", lambda im: _save(ImageEnhance.Brightness(im).enhance(1.25))),
    "contrast +30%": ("benign", lambda im: _save(ImageEnhance.Contrast(im).enhance(1.3))),
    "saturation +50%": ("benign", lambda im: _save(ImageEnhance.Color(im).enhance(1.5))),
    "gaussian blur": (
        "benign",
        lambda im: _save(im.filter(ImageFilter.GaussianBlur(max(1, im.width / 400)))),
    ),
    "sharpen": ("benign", lambda im: _save(im.filter(ImageFilter.SHARPEN))),
    "text watermark": ("benign", lambda im: _save(_watermark(im))),
    "aspect 4:3 -> squashed 80%": (
        "benign",
        lambda im: _save(im.resize((im.width, max(1, round(im.height * 0.8))))),
    ),
    "crop 5%": ("benign", lambda im: _save(_crop(im, 0.05))),
    "crop 10%": ("hard", lambda im: _save(_crop(im, 0.10))),
    "letterbox": ("hard", lambda im: _save(_letterbox(im))),
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
    "confirmed": SearchOptions(confirm=True),
    "all orientations": SearchOptions(confirm=True, all_orientations=True),
}


@dataclass
class EvalQuery:
    """One image searched: its expected original (None for a distinct image) and how it was made."""

    name: str
    expected: str | None
    edit: str
    kind: str
    data: bytes


@dataclass
class Report:
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
    # (distance, DCT distance, correct) of every unconfirmed candidate, to sweep the threshold
    candidates: list[tuple[int, int | None, bool]] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # edit -> queries the service refused
    skipped: list[str] = field(default_factory=list)  # originals the service refused to index
    originals: int = 0
    distinct: int = 0


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def viewed(data: bytes) -> Image.Image:
    """The image as a viewer shows it (orientation applied, transparency on white), in RGB."""
    image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    return (on_white(image) if has_transparency(image) else image).convert("RGB")


def edited_copies(path: Path) -> list[EvalQuery]:
    """Every edit of one original (run in worker processes: encoding dominates)."""
    image = viewed(path.read_bytes())
    return [EvalQuery(path.name, path.name, name, kind, edit(image)) for name, (kind, edit) in EDITS.items()]


def queries(
    folder: Path, distinct_folder: Path | None, hold_out_every: int, workers: int
) -> tuple[list[Path], Callable[[list[Path]], Iterator[EvalQuery]]]:
    """The originals to index, and what makes every query once they are indexed: edited copies of
    the indexed ones, shipped duplicates, distinct images (every `hold_out_every`-th image of the
    folder, never indexed, and those of `distinct_folder`)."""
    groups = _read_groups(folder / "GROUPS.tsv")
    if groups:
        originals = [folder / row["file"] for row in groups if row["role"] == "kept"]
        kept_of = {row["group_id"]: row["file"] for row in groups if row["role"] == "kept"}
        shipped = [
            EvalQuery(
                row["file"],
                kept_of[row["group_id"]],
                f"shipped: {row['relation']}",
                "shipped",
                (folder / row["file"]).read_bytes(),
            )
            for row in groups
            if row["role"] != "kept"
        ]
        held_out = []
    else:
        files, shipped = image_files(folder), []
        held_out = files[hold_out_every - 1 :: hold_out_every] if hold_out_every else []
        originals = [path for path in files if path not in held_out]
    distinct = held_out + (image_files(distinct_folder) if distinct_folder else [])

    def generate(indexed: list[Path]) -> Iterator[EvalQuery]:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for copies in pool.map(edited_copies, indexed):
                yield from copies
        yield from shipped
        for path in distinct:
            yield EvalQuery(path.name, None, "distinct (held out)", "distinct", path.read_bytes())

    return originals, generate


def evaluate(
    folder: Path,
    *,
    distinct_folder: Path | None,
    hold_out_every: int,
    max_distance: int,
    confirm_distance: int,
    workers: int = 2,
) -> Report:
    settings = Settings(
        max_distance=max_distance,
        confirm_distance=confirm_distance,
        max_pixels=10**9,
        max_concurrent_decodes=1,  # it searches one query at a time
    )
    service = build_service(settings, store=MemoryImageStore())
    service.start()
    try:
        return _evaluate(service, folder, distinct_folder, hold_out_every, workers)
    finally:
        service.close()


def _evaluate(
    service: DoppelService, folder: Path, distinct_folder: Path | None, hold_out_every: int, workers: int
) -> Report:
    originals, all_queries = queries(folder, distinct_folder, hold_out_every, workers)
    report = Report()
    indexed = []
    for path in originals:
        try:
            service.ingest.add(path.read_bytes(), image_id=path.name, metadata={})
            indexed.append(path)
        except DoppelError as exc:
            report.skipped.append(f"{path.name}: {exc.detail}")
    report.originals = len(indexed)

    # Originals against each other: every match is a wrong one (each pair is seen from both sides).
    for path in indexed:
        for label, options in MODES.items():
            _, matches = service.matching.duplicates_of(path.name, options=options)
            report.wrong[label]["originals (pairs)"] += len(matches) / 2  # type: ignore[assignment]
            report.wrong_pairs[label].update(frozenset((path.name, m.record.id)) for m in matches)
    for query in all_queries(indexed):
        _search(service, query, report)
    return report


def _search(service: DoppelService, query: EvalQuery, report: Report) -> None:
    if query.kind == "distinct":
        report.distinct += 1
    else:
        report.total[query.edit] += 1
        report.kinds[query.edit] = query.kind
    try:
        upload = service.matching.hasher.hash(query.data)
    except DoppelError:
        report.refused[query.edit] += 1  # counted, and not found
        return
    found = query_of_upload(upload)
    for label, options in MODES.items():
        matches = service.matching.find(found, options)
        if query.expected is not None and any(m.record.id == query.expected for m in matches):
            report.found[label][query.edit] += 1
        source = "held-out distinct images" if query.kind == "distinct" else "edited copies"
        wrong = [m.record.id for m in matches if m.record.id != query.expected]
        report.wrong[label][source] += len(wrong)
        report.wrong_pairs[label].update(frozenset((query.expected or query.name, w)) for w in wrong)
        if label == "plain dHash":
            report.candidates += [_candidate(m, query.expected) for m in matches]


def _candidate(match: Match, expected: str | None) -> tuple[int, int | None, bool]:
    return match.distance, match.dct_distance, match.record.id == expected


def _read_groups(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def format_report(report: Report, *, confirm_distance: int) -> str:
    """Markdown tables: recall per edit and mode, wrong matches, and a sweep of the confirm threshold."""
    modes = list(MODES)
    lines = [
        f"{report.originals} originals indexed, {sum(report.total.values())} copies searched, "
        f"{report.distinct} held-out distinct images; confirm distance {confirm_distance}.",
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
    for kind in ("benign", "orientation"):
        edits = [e for e in report.total if report.kinds[e] == kind]
        if edits:
            total = sum(report.total[e] for e in edits)
            cells = [f"**{100 * sum(report.found[m][e] for e in edits) / total:.1f}%**" for m in modes]
            lines.append(f"| **all {kind} edits** | | " + " | ".join(cells) + " |")
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
    lines += ["", "Confirm-distance sweep over the plain dHash candidates (right kept / wrong kept):", ""]
    right = [c for c in report.candidates if c[2]]
    wrong = [c for c in report.candidates if not c[2]]
    for threshold in range(4, 25, 2):
        kept_right = sum(c[1] is None or c[1] <= threshold for c in right)
        kept_wrong = sum(c[1] is None or c[1] <= threshold for c in wrong)
        lines.append(
            f"- DCT distance <= {threshold:2d}: "
            f"{kept_right}/{len(right)} right, {kept_wrong}/{len(wrong)} wrong"
        )
    return "\n".join(lines)
