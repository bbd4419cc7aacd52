"""What a scan found, written for people and programs: a table, JSON, CSV and a self-contained
HTML page of thumbnails."""

import base64
import csv
import html
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from PIL import Image, ImageOps

from app.imaging import has_transparency, on_white
from app.imaging.hashing import READ_FORMATS
from app.scan.scanner import Group, Pair, ScannedFile, ScanResult

THUMBNAIL_SIDE = 180
_DRAFT_SIDE = 2 * THUMBNAIL_SIDE  # JPEGs decode at a reduced scale no smaller than this


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def modified(file: ScannedFile) -> str:
    """The file's modification time, in UTC, to the second."""
    moment = datetime.fromtimestamp(file.found.mtime_ns / 1e9, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def summary(result: ScanResult) -> str:
    in_groups = sum(len(g.members) for g in result.groups)
    return (
        f"{count(len(result.files), 'image')}, {count(len(result.skipped), 'file')} skipped "
        f"({result.hashed} read now, {result.cached} known from the cache); "
        f"{count(len(result.groups), 'group')} of duplicates holding {count(in_groups, 'file')} "
        f"({in_groups - len(result.groups)} beyond one per group)"
    )


def write_table(result: ScanResult, out: TextIO) -> None:
    """Groups, biggest first: each member with its size, and its nearest match in the group."""
    for number, group in enumerate(result.groups, 1):
        identical = sum(p.exact for p in group.pairs)
        out.write(
            f"group {number}: {len(group.members)} files"
            + (f", {identical} identical pair(s)" if identical else "")
            + "\n"
        )
        for member in group.members:
            near = _nearest(group, member)
            tags = [t for t, f in (("largest", group.largest), ("oldest", group.oldest)) if f is member]
            match = "identical to" if near.exact else f"{count(near.distance, 'bit')} from"
            other = near.b if near.a is member else near.a
            out.write(
                f"  {member.hashes.width:>5}x{member.hashes.height:<5} {member.hashes.format:<4} "
                f"{human_bytes(member.found.size):>9}  {member.found.path}"
                + (f"  [{', '.join(tags)}]" if tags else "")
                + f"  ({match} {other.found.path.name})\n"
            )
    for skipped in result.skipped:
        out.write(f"skipped {skipped.path}: {skipped.reason}\n")
    out.write(summary(result) + "\n")


def _nearest(group: Group, member: ScannedFile) -> Pair:
    return min((p for p in group.pairs if member in (p.a, p.b)), key=lambda p: (not p.exact, p.distance))


def as_json(result: ScanResult) -> dict[str, Any]:
    return {
        "groups": [
            {
                "files": [_file_json(f) for f in group.members],
                "largest": str(group.largest.found.path),
                "oldest": str(group.oldest.found.path),
                "pairs": [
                    {
                        "a": str(p.a.found.path),
                        "b": str(p.b.found.path),
                        "distance": p.distance,
                        "dct_distance": p.dct_distance,
                        "orientation": p.orientation.value,
                        "exact": p.exact,
                    }
                    for p in group.pairs
                ],
            }
            for group in result.groups
        ],
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in result.skipped],
        "images": len(result.files),
    }


def _file_json(file: ScannedFile) -> dict[str, Any]:
    return {
        "path": str(file.found.path),
        "bytes": file.found.size,
        "width": file.hashes.width,
        "height": file.hashes.height,
        "format": file.hashes.format,
        "modified": modified(file),
        "sha256": file.hashes.sha256,
    }


def write_json(result: ScanResult, out: TextIO) -> None:
    json.dump(as_json(result), out, indent=1, ensure_ascii=False)
    out.write("\n")


CSV_FIELDS = (
    "group",
    "path",
    "bytes",
    "width",
    "height",
    "format",
    "modified",
    "largest",
    "oldest",
    "nearest",
    "distance",
    "exact",
)


def write_csv(result: ScanResult, out: TextIO) -> None:
    """One row per member of a group, with its nearest match in the group."""
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for number, group in enumerate(result.groups, 1):
        for member in group.members:
            near = _nearest(group, member)
            other = near.b if near.a is member else near.a
            writer.writerow(
                [
                    number,
                    member.found.path,
                    member.found.size,
                    member.hashes.width,
                    member.hashes.height,
                    member.hashes.format,
                    modified(member),
                    int(member is group.largest),
                    int(member is group.oldest),
                    other.found.path,
                    near.distance,
                    int(near.exact),
                ]
            )


def thumbnail_uri(path: Path) -> str | None:
    """A small JPEG of the image as a viewer shows it, as a data: URI; None when it cannot be read."""
    try:
        with Image.open(path, formats=READ_FORMATS) as image:
            if image.format == "JPEG":
                image.draft("RGB", (_DRAFT_SIDE, _DRAFT_SIDE))
            shown = ImageOps.exif_transpose(image)
            shown = (on_white(shown) if has_transparency(shown) else shown).convert("RGB")
            shown.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            shown.save(buffer, "JPEG", quality=80)
    except Exception:  # the file changed or went away since it was hashed: no picture, the row stays
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;padding:1em 2em;background:#f4f4f2;color:#222}
h1{font-size:1.4em;margin:.2em 0}.summary{color:#555;margin-bottom:1.5em}
section{background:#fff;border:1px solid #ddd;border-radius:8px;padding:.8em 1em;margin:0 0 1.2em}
h2{font-size:1.05em;margin:0 0 .6em}.members{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;width:190px;border:1px solid #e3e3e3;border-radius:6px;padding:5px;background:#fafafa}
figure img,.none{display:block;max-width:180px;max-height:180px;margin:0 auto}
.none{width:180px;height:120px;line-height:120px;text-align:center;color:#999;background:#eee}
figcaption{font-size:12px;margin-top:4px}.path{word-break:break-all}.meta{color:#555}
.tag{display:inline-block;font-size:11px;padding:0 5px;border-radius:3px;margin-right:3px;background:#dfe9f7}
.exact{background:#f7dcdc}.pairs{font-size:12px;color:#444;margin:.6em 0 0}
.pair{display:inline-block;margin:0 14px 2px 0;white-space:nowrap}
table{border-collapse:collapse;font-size:12px}td{padding:1px 8px;border-bottom:1px solid #eee}
"""


def write_html(result: ScanResult, out: TextIO) -> None:
    """One page, nothing outside it: every group, biggest first, its members side by side as
    thumbnails with size, format and date, and the distances of its pairs."""
    e = html.escape
    out.write(
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        f"<title>Doppel: {len(result.groups)} groups of duplicates</title><style>{_STYLE}</style>"
        "</head><body>\n"
        f"<h1>Duplicates found by Doppel</h1><p class=summary>{e(summary(result))}</p>\n"
    )
    for number, group in enumerate(result.groups, 1):
        numbers = {id(m): n for n, m in enumerate(group.members, 1)}
        identical = {id(f) for p in group.pairs if p.exact for f in (p.a, p.b)}
        out.write(f"<section><h2>Group {number}: {len(group.members)} files</h2><div class=members>\n")
        for n, member in enumerate(group.members, 1):
            out.write(_figure(n, member, group, exact=id(member) in identical))
        out.write("</div><p class=pairs>")
        for p in group.pairs:
            # how far apart: dHash bits, DCT bits (the confirmation), and how the second is turned
            dct = "" if p.dct_distance is None else f", DCT {p.dct_distance}"
            how = "identical files" if p.exact else f"{count(p.distance, 'bit')}{dct}"
            turned = "" if p.orientation.value == "original" else f", {p.orientation.value}"
            out.write(
                f"<span class=pair><b>{numbers[id(p.a)]} ~ {numbers[id(p.b)]}</b>: {how}{turned}</span>"
            )
        out.write("</p></section>\n")
    if result.skipped:
        out.write("<section><h2>Skipped</h2><table>\n")
        for skipped in result.skipped:
            out.write(f"<tr><td>{e(str(skipped.path))}</td><td>{e(skipped.reason)}</td></tr>\n")
        out.write("</table></section>\n")
    out.write("</body></html>\n")


def _figure(n: int, member: ScannedFile, group: Group, *, exact: bool) -> str:
    """One member: its thumbnail, path, size, format, date and tags."""
    e = html.escape
    uri = thumbnail_uri(member.found.path)
    picture = (
        f"<img src='{uri}' alt='{e(member.found.path.name)}'>" if uri else "<div class=none>no preview</div>"
    )
    tags = [("largest", member is group.largest), ("oldest", member is group.oldest), ("identical", exact)]
    badges = "".join(
        f"<span class='tag{' exact' if name == 'identical' else ''}'>{name}</span>" for name, on in tags if on
    )
    hashes = member.hashes
    return (
        f"<figure>{picture}<figcaption><div class=path><b>{n}.</b> {e(str(member.found.path))}</div>"
        f"<div class=meta>{hashes.width}x{hashes.height} {e(hashes.format)}, {human_bytes(member.found.size)}"
        f"<br>modified {modified(member)[:10]}</div>{badges}</figcaption></figure>\n"
    )
