"""The accuracy evaluation command: `python main.py eval DIR...`."""

from collections import Counter, defaultdict
from pathlib import Path

import pytest
from helpers import make_photo
from PIL import Image

from app.cli import main
from app.evaluation import (
    BENIGN_KINDS,
    EDITS,
    HALVES,
    STORED_FIRST,
    Report,
    _half_tables,
    evaluate,
    half_of,
    split,
)


def photos(folder: Path, count: int) -> Path:
    folder.mkdir()
    for seed in range(count):
        make_photo(seed, (240, 180)).save(folder / f"{seed}.png")
    (folder / "notes.txt").write_text("not an image, left out")
    return folder


@pytest.fixture
def originals(tmp_path: Path) -> Path:
    """Two photos, one in each half (the halves of 0.png and 1.png)."""
    return photos(tmp_path / "originals", 2)


def test_the_split_is_deterministic_and_disjoint(tmp_path: Path) -> None:
    originals = photos(tmp_path / "originals", 8)
    halves = split([originals], [], hold_out_every=3)
    tune, held_out = (halves[h] for h in HALVES)
    files = [*tune.originals.values(), *tune.distinct, *held_out.originals.values(), *held_out.distinct]
    assert sorted(p.name for p in files) == [f"{seed}.png" for seed in range(8)]  # each file once
    assert all(half_of(p.name) == "tune" for p in [*tune.originals.values(), *tune.distinct])
    assert tune.originals and held_out.originals  # 8 names: both halves get some
    # A file's half is its name's alone: other files around it, or another folder, do not move it.
    other = tmp_path / "other"
    other.mkdir()
    (other / "3.png").write_bytes((originals / "3.png").read_bytes())
    assert "other:3.png" in split([other], [], hold_out_every=0)[half_of("3.png")].originals


def test_every_copy_is_searched_and_counted(originals: Path) -> None:
    reports = evaluate([originals], distinct_folders=[], hold_out_every=0, max_distance=10, max_score=10)
    assert [r.originals for r in reports.values()] == [1, 1]
    for half, report in reports.items():
        count = len(split([originals], [], 0)[half].originals)
        assert set(report.total) == set(EDITS)
        assert all(total == count for total in report.total.values())
        for edit in ("resize 50%", "jpeg quality 30", "png", "greyscale", "letterbox", "white frame 5%"):
            assert report.found["plain dHash"][edit] == count
            assert report.found["default"][edit] == count
        assert report.found["all orientations"]["flip horizontal"] == count
        # each copy stored on its own and the original searched: the same copies found
        for edit in ("resize 50%", "png", "letterbox", "white frame 5%", "in a 16:9 video frame"):
            assert report.found[STORED_FIRST][edit] == count
        assert report.found[STORED_FIRST]["flip horizontal"] == 0  # the default does not turn
        assert sum(report.wrong[STORED_FIRST].values()) == 0
        assert all(c.right for c in report.candidates if c.distance <= 2)
        # every benign-kind copy the default missed is counted against its original
        benign = [e for e, (kind, _) in EDITS.items() if kind in BENIGN_KINDS]
        assert sum(report.missed.values()) == sum(
            report.total[e] - report.found["default"][e] for e in benign
        )
        assert set(report.missed) <= set(split([originals], [], 0)[half].originals)


def test_eval_command_prints_both_halves(originals: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(originals), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "### tune half" in out and "### held-out half" in out
    assert (
        out.count(
            "| edit | kind | plain dHash recall | default recall | all orientations recall | "
            "copy stored first recall |"
        )
        == 2
    )
    assert out.count("| resize 50% | benign | 100.0% | 100.0% | 100.0% | 100.0% |") == 2
    assert "| **all border edits** |" in out and "| **all orientation edits** |" in out
    assert "wrong matches" in out and "Score sweep" in out


def test_the_most_missed_originals_are_named() -> None:
    report = Report(missed=Counter({"dev:flat.png": 14, "dev:wide.png": 10, "dev:a.png": 1}))
    lines = _half_tables(report)
    most = "dev:flat.png 14, dev:wide.png 10, dev:a.png 1"
    assert f"Benign copies missed by default, by original (most missed first): {most}." in lines
    assert not any("missed by default" in line for line in _half_tables(Report()))


def test_flat_originals_are_named_and_left_out_of_a_second_figure(tmp_path: Path) -> None:
    folder = photos(tmp_path / "originals", 4)
    Image.new("RGB", (320, 240), (222, 222, 220)).save(folder / "blank.png")
    reports = evaluate([folder], distinct_folders=[], hold_out_every=0, max_distance=10, max_score=10)
    assert sorted(name for r in reports.values() for name in r.flat) == ["originals:blank.png"]
    report = Report(
        total=Counter({"png": 4, "caption": 4}),
        kinds={"png": "benign", "caption": "overlay"},
        found=defaultdict(Counter, {"default": Counter({"png": 4, "caption": 2})}),
        flat=["dev:blank.png"],
        flat_total=Counter({"png": 1, "caption": 1}),
        flat_found=defaultdict(Counter, {"default": Counter({"png": 1})}),
    )
    lines = [line.replace("**", "") for line in _half_tables(report)]
    assert any(
        line.startswith("| all benign edits (benign, overlay, border) | | 0.0% | 75.0%") for line in lines
    )
    # 3 + 2 of the 6 copies of the other originals
    assert any(
        line.startswith("| all benign edits, flat pictures left out | | 0.0% | 83.3%") for line in lines
    )
    assert any(
        line.startswith("| all overlay edits, flat pictures left out | | 0.0% | 66.7%") for line in lines
    )
    assert any("Flat pictures" in line and "dev:blank.png" in line for line in lines)
    assert not any(
        "flat" in line.lower() for line in _half_tables(Report(total=report.total, kinds=report.kinds))
    )
    # a half whose originals are all flat has nothing left to count
    every_copy_flat = Report(**{**vars(report), "flat_total": report.total})
    lines = _half_tables(every_copy_flat)
    assert not any("left out" in line for line in lines) and any("Flat pictures" in line for line in lines)


def test_eval_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().out
