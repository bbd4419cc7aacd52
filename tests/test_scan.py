"""`python main.py scan`: the walk, hashing through the cache, the groups (held equal to the
service's own duplicates search), and the table, JSON, CSV and HTML written."""

import base64
import csv
import json
import os
import subprocess
import sys
from html.parser import HTMLParser
from io import BytesIO, StringIO
from pathlib import Path

import pytest
from helpers import SHARED_IMAGES, encode, make_photo, needs_shared
from live_server import REPO
from PIL import Image, ImageOps

from app.cli import main
from app.config import Settings
from app.evaluation import _padded_square, _save, _screenshot, viewed
from app.scan.cache import HashCache
from app.scan.progress import progress
from app.scan.scanner import ScanResult, scan
from app.scan.walk import walk
from app.service import build_service
from app.service.groups import groups_of
from app.service.matching import SearchOptions

SCAN_SETTINGS = Settings()


def test_groups_are_the_connected_components_of_the_pairs() -> None:
    assert groups_of([(1, 2), (3, 4), (2, 3), (5, 6), (7, 7)]) == [[1, 2, 3, 4], [5, 6], [7]]
    assert groups_of([("b", "a"), ("c", "d"), ("d", "a")]) == [["b", "a", "c", "d"]]
    assert groups_of([]) == []


def test_walk_takes_each_file_once_and_names_what_it_skips(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub" / ".hidden").mkdir(parents=True)
    (root / "a.jpg").write_bytes(b"a")
    (root / "sub" / "b.png").write_bytes(b"b")
    (root / ".dot.jpg").write_bytes(b"c")
    (root / "sub" / ".hidden" / "d.jpg").write_bytes(b"d")
    (root / "sub" / "loop").symlink_to(root)  # a folder loop
    (root / "sub" / "same.jpg").symlink_to(root / "a.jpg")  # a second name of one file
    (root / "broken.jpg").symlink_to(tmp_path / "missing")
    os.mkfifo(root / "pipe")

    walked = walk([root, root / "sub"])  # the second folder is inside the first: nothing twice
    assert [f.relative for f in walked.files] == ["a.jpg", "sub/b.png"]
    assert [f.path for f in walked.files] == [root / "a.jpg", root / "sub" / "b.png"]
    reasons = {s.path.name: s.reason for s in walked.skipped}
    assert reasons == {"broken.jpg": reasons["broken.jpg"], "pipe": "not a regular file"}
    assert "broken link" in reasons["broken.jpg"]

    every = walk([root], hidden=True)
    assert [f.relative for f in every.files] == [".dot.jpg", "a.jpg", "sub/.hidden/d.jpg", "sub/b.png"]


def _folder(tmp_path: Path) -> Path:
    """Six photos, copies of three of them, and files that are not images."""
    folder = tmp_path / "photos"
    (folder / "trip").mkdir(parents=True)
    photos = {n: make_photo(n) for n in range(1, 7)}
    for n, photo in photos.items():
        (folder / f"p{n}.jpg").write_bytes(encode(photo, "JPEG", quality=90))
    (folder / "trip" / "p1-small.jpg").write_bytes(encode(photos[1].resize((320, 240)), "JPEG", quality=80))
    (folder / "trip" / "p1.png").write_bytes(encode(photos[1], "PNG"))
    (folder / "trip" / "p2-copy.jpg").write_bytes((folder / "p2.jpg").read_bytes())
    (folder / "trip" / "p3-grey.webp").write_bytes(encode(ImageOps.grayscale(photos[3]), "WEBP"))
    (folder / "trip" / "p4-mirror.jpg").write_bytes(encode(ImageOps.mirror(photos[4]), "JPEG"))
    (folder / "notes.txt").write_text("not a picture")
    (folder / "cut.jpg").write_bytes((folder / "p5.jpg").read_bytes()[:300])  # a damaged JPEG
    (folder / "empty.png").write_bytes(b"")
    return folder


def _names(result: ScanResult) -> list[set[str]]:
    return [{m.found.relative for m in g.members} for g in result.groups]


def test_scan_groups_the_copies_and_skips_what_is_not_an_image(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    os.utime(folder / "trip" / "p1.png", ns=(10**18, 10**18))  # made old

    result = scan([folder], SCAN_SETTINGS)

    assert _names(result) == [
        {"p1.jpg", "trip/p1-small.jpg", "trip/p1.png"},
        {"p2.jpg", "trip/p2-copy.jpg"},
        {"p3.jpg", "trip/p3-grey.webp"},
    ]
    first = result.groups[0]
    assert first.oldest.found.relative == "trip/p1.png"
    assert first.largest.found.relative == "trip/p1.png"  # as many pixels as p1.jpg, more bytes
    exact = [(p.a.found.relative, p.b.found.relative) for g in result.groups for p in g.pairs if p.exact]
    assert exact == [("p2.jpg", "trip/p2-copy.jpg")]
    reasons = {s.path.name: s.reason for s in result.skipped}
    assert set(reasons) == {"notes.txt", "cut.jpg", "empty.png"}
    assert reasons["notes.txt"].startswith("not an image")
    assert "could not be" in reasons["cut.jpg"]  # the service's reason for a damaged image
    assert "empty" in reasons["empty.png"]
    assert len(result.files) == 11 and result.hashed == 14 and result.cached == 0

    turned = scan([folder], SCAN_SETTINGS, all_orientations=True)
    assert {"p4.jpg", "trip/p4-mirror.jpg"} in _names(turned)
    mirrored = next(p for g in turned.groups for p in g.pairs if p.b.found.relative == "trip/p4-mirror.jpg")
    assert mirrored.orientation.value == "flip_horizontal"


@pytest.mark.parametrize("all_orientations", [False, True])
def test_scan_pairs_are_the_services_duplicates(
    tmp_path: Path, settings: Settings, all_orientations: bool
) -> None:
    """The oracle: the pairs are those the service's GET /images/{id}/duplicates finds once the
    same files are stored (on SQLite and PostgreSQL), with the same distances."""
    folder = _folder(tmp_path)
    result = scan([folder], SCAN_SETTINGS, all_orientations=all_orientations)
    service = build_service(settings)
    service.start()
    try:
        for file in result.files:
            service.ingest.add(file.found.path.read_bytes(), image_id=_id(file.found.relative), metadata={})
        expected = set()
        for file in result.files:
            image_id = _id(file.found.relative)
            options = SearchOptions(limit=None, all_orientations=all_orientations)
            _, matches = service.matching.duplicates_of(image_id, options=options)
            expected |= {(frozenset((image_id, m.record.id)), m.distance, m.exact) for m in matches}
    finally:
        service.close()
    found = {
        (frozenset((_id(pair.a.found.relative), _id(pair.b.found.relative))), pair.distance, pair.exact)
        for group in result.groups
        for pair in group.pairs
    }
    assert found == expected and found


def _id(relative: str) -> str:
    return relative.replace("/", "+")  # ids hold no '/'


@needs_shared
def test_scan_groups_screenshots_and_padded_copies_with_their_originals(tmp_path: Path) -> None:
    """Each file's other cuts are kept, in the cache too: the picture of a screenshot, or a picture
    padded with the colour of its edge, meets its original."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, copy, fmt in (("0058.jpg", _screenshot, "PNG"), ("0004.jpg", _padded_square, "JPEG")):
        original = (SHARED_IMAGES / "dev" / name).read_bytes()
        (folder / name).write_bytes(original)
        picture = ImageOps.contain(viewed(original), (1024, 1024))
        (folder / f"copy-of-{name}.img").write_bytes(_save(copy(picture), fmt))
    cache = HashCache(tmp_path / "cache" / "hashes.sqlite3")
    try:
        for hashed, cached in ((4, 0), (0, 4)):
            result = scan([folder], SCAN_SETTINGS, cache=cache)
            assert (result.hashed, result.cached) == (hashed, cached)
            assert sorted(map(sorted, _names(result))) == [
                ["0004.jpg", "copy-of-0004.jpg.img"],
                ["0058.jpg", "copy-of-0058.jpg.img"],
            ]
    finally:
        cache.close()


def test_a_second_scan_reads_only_what_changed(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    cache = HashCache(tmp_path / "cache" / "hashes.sqlite3")
    try:
        first = scan([folder], SCAN_SETTINGS, cache=cache)
        again = scan([folder], SCAN_SETTINGS, cache=cache)
        assert (again.hashed, again.cached) == (0, 14)
        assert _names(again) == _names(first)
        assert [(s.path, s.reason) for s in again.skipped] == [(s.path, s.reason) for s in first.skipped]

        (folder / "p6.jpg").write_bytes((folder / "p5.jpg").read_bytes())  # p6 becomes a copy of p5
        changed = scan([folder], SCAN_SETTINGS, cache=cache)
        assert (changed.hashed, changed.cached) == (1, 13)
        assert {"p5.jpg", "p6.jpg"} in _names(changed)
    finally:
        cache.close()


def test_scan_command_writes_the_table_json_csv_and_a_self_contained_page(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    out = tmp_path / "out"
    out.mkdir()
    args = [
        "scan",
        str(folder),
        "--json",
        str(out / "r.json"),
        "--csv",
        str(out / "r.csv"),
        "--html",
        str(out / "r.html"),
    ]
    assert main(args) == 0
    assert (tmp_path / "xdg" / "doppel" / "scan-cache.sqlite3").is_file()  # the default cache
    printed = capsys.readouterr()
    table = printed.out
    assert all(f"wrote {out / name}" in printed.err for name in ("r.json", "r.csv", "r.html"))
    assert "group 1: 3 files" in table and "identical to p2-copy.jpg" in table
    assert f"skipped {folder / 'notes.txt'}: not an image" in table
    assert table.rstrip().endswith("3 groups of duplicates holding 7 files (4 beyond one per group)")

    report = json.loads((out / "r.json").read_text())
    assert [len(g["files"]) for g in report["groups"]] == [3, 2, 2]
    first = report["groups"][0]
    assert first["largest"] in [f["path"] for f in first["files"]]
    assert {(p["a"], p["b"]) for p in first["pairs"]} <= {
        (a["path"], b["path"]) for a in first["files"] for b in first["files"]
    }
    assert all(
        set(p) == {"a", "b", "distance", "dct_distance", "orientation", "exact"} for p in first["pairs"]
    )
    assert len(report["skipped"]) == 3 and report["images"] == 11

    with (out / "r.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["group"] for r in rows] == ["1", "1", "1", "2", "2", "3", "3"]
    assert sum(r["largest"] == "1" for r in rows) == 3 and sum(r["oldest"] == "1" for r in rows) == 3

    page = _Page()
    page.feed((out / "r.html").read_text())
    assert page.sections == 4  # three groups and the skipped files
    assert len(page.images) == 7 and all(src.startswith("data:image/jpeg;base64,") for src in page.images)
    assert page.links == []  # nothing outside the page
    for group in report["groups"]:
        for member in group["files"]:
            assert member["path"] in page.text
    decoded = Image.open(BytesIO(base64.b64decode(page.images[0].split(",", 1)[1])))
    assert max(decoded.size) <= 180


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections = 0
        self.images: list[str] = []
        self.links: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.sections += tag == "section"
        if tag == "img":
            self.images.append(values["src"] or "")
        self.links += [v for k, v in attrs if k in {"href", "src"} and v and not v.startswith("data:")]

    def handle_data(self, data: str) -> None:
        self.text += data


def test_scan_command_refuses_a_missing_folder_and_a_bad_distance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scan", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["scan", str(tmp_path), "--json", str(tmp_path / "no" / "r.json")]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["scan", str(tmp_path), "--max-distance", "65"])
    assert exit_.value.code == 2


def test_scan_command_goes_on_without_a_cache_it_cannot_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path)
    cache = tmp_path / "cache.sqlite3"
    cache.write_bytes(b"this is not a SQLite database" * 100)
    assert main(["scan", str(folder), "--cache", str(cache)]) == 0
    captured = capsys.readouterr()
    assert "cannot be used" in captured.err and "group 1: 3 files" in captured.out


def test_progress_is_plain_lines_when_not_on_a_terminal() -> None:
    out = StringIO()
    with progress(3, label="hashing", out=out) as bar:
        bar.update(3)
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and lines
    assert all(line.startswith("hashing:") for line in lines)
    assert "3/3" in lines[-1]


def test_python_main_scan_runs_as_a_user_runs_it(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    done = subprocess.run(
        [sys.executable, "main.py", "scan", str(folder), "--cache", str(tmp_path / "c.sqlite3")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "group 3: 2 files" in done.stdout
    assert "hashing:" in done.stderr and "14/14" in done.stderr and "\r" not in done.stderr


@needs_shared
def test_scan_of_the_shared_photos_finds_the_shipped_duplicates(tmp_path: Path) -> None:
    """natural/GROUPS.tsv marks which of its files are copies of which, and which a distance of 10
    finds: every such group is found whole, and no two groups are joined."""
    with (SHARED_IMAGES / "natural" / "GROUPS.tsv").open(newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    found = scan([SHARED_IMAGES / "natural", SHARED_IMAGES / "bad"], SCAN_SETTINGS)
    group_of = {m.found.path.name: n for n, g in enumerate(found.groups) for m in g.members}
    for group_id in {r["group_id"] for r in rows}:
        detected = [r["file"] for r in rows if r["group_id"] == group_id and r["detected_at_10"] != "NO"]
        assert len({group_of.get(name) for name in detected}) == 1, group_id
    assert len({r["group_id"] for r in rows for n in [group_of.get(r["file"])] if n is not None}) == len(
        found.groups
    )
    assert [s.path.name for s in found.skipped] == ["corrupt_ukbench09268.jpg", "GROUPS.tsv"]
