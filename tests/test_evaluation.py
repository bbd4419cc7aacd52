"""The accuracy evaluation command: `python main.py eval DIR`."""

from pathlib import Path

import pytest
from helpers import make_photo

from app.cli import main
from app.evaluation import EDITS, evaluate


@pytest.fixture
def originals(tmp_path: Path) -> Path:
    folder = tmp_path / "originals"
    folder.mkdir()
    for seed in range(6):
        make_photo(seed, (320, 240)).save(folder / f"{seed}.png")
    (folder / "notes.txt").write_text("not an image, left out")
    return folder


def test_every_copy_is_searched_and_counted(originals: Path) -> None:
    report = evaluate(
        originals, distinct_folder=None, hold_out_every=3, max_distance=10, confirm_distance=16, workers=1
    )
    assert (report.originals, report.distinct) == (4, 2)
    assert set(report.total) == set(EDITS)
    assert all(count == 4 for count in report.total.values())
    for edit in ("resize 50%", "jpeg quality 30", "png", "greyscale"):
        assert report.found["plain dHash"][edit] == 4
        assert report.found["confirmed"][edit] == 4
    assert report.found["all orientations"]["flip horizontal"] == 4
    assert report.found["plain dHash"]["flip horizontal"] < 4


def test_eval_command_prints_the_tables(originals: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(originals), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "| resize 50% | benign | 100.0% | 100.0% | 100.0% |" in out
    assert "| **all orientation edits** |" in out
    assert "wrong matches" in out


def test_eval_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path / "nowhere")]) == 2
    assert "not a folder" in capsys.readouterr().out
