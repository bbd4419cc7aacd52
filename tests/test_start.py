"""Start conditions a person must fix end in one clear line naming the path, and exit status 2,
like a bad setting: the data folder is a file, the database is not one, is damaged, belongs to
another application or to a newer Doppel. Nothing of the file is changed."""

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from live_server import REPO

from app.config import Settings
from app.imaging import HASHING_VERSION
from app.models import NewImage
from app.store import SQLiteImageStore
from app.store.base import StoreUnusable


def start(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOPPEL_")}
    env |= {"DOPPEL_DATA_DIR": str(data_dir), "DOPPEL_PORT": "0"}
    return subprocess.run(
        [sys.executable, "main.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


def a_file_as_the_data_folder(data_dir: Path) -> str:
    data_dir.write_text("not a folder")
    return "cannot be used"


def random_bytes(data_dir: Path) -> str:
    data_dir.mkdir()
    (data_dir / "doppel.sqlite3").write_bytes(os.urandom(8192))
    return "not a SQLite database"


def truncated(data_dir: Path) -> str:
    store = SQLiteImageStore(data_dir / "doppel.sqlite3")
    with store.writing() as write:
        write.add(
            [
                NewImage(
                    id=f"i{n}",
                    dhash=n,
                    width=1,
                    height=1,
                    metadata={"pad": "x" * 500},
                    hashing_version=HASHING_VERSION,
                )
                for n in range(2000)
            ]
        )
    store.close()
    database = data_dir / "doppel.sqlite3"
    database.write_bytes(database.read_bytes()[: database.stat().st_size // 2])
    return "damaged"


def another_schema(data_dir: Path) -> str:
    data_dir.mkdir()
    db = sqlite3.connect(data_dir / "doppel.sqlite3")
    db.execute("CREATE TABLE users (name TEXT)")
    db.commit()
    db.close()
    return "another schema than Doppel's (tables: users)"


def newer_doppel(data_dir: Path) -> str:
    SQLiteImageStore(data_dir / "doppel.sqlite3").close()
    db = sqlite3.connect(data_dir / "doppel.sqlite3")
    db.execute("PRAGMA user_version=99")
    db.close()
    return "written by a newer Doppel (schema 99"


@pytest.mark.parametrize(
    "make", [a_file_as_the_data_folder, random_bytes, truncated, another_schema, newer_doppel]
)
def test_a_store_that_cannot_be_used_is_one_line_and_status_2(
    tmp_path: Path, make: Callable[[Path], str]
) -> None:
    data_dir = tmp_path / "data"
    expected = make(data_dir)
    target = data_dir if data_dir.is_file() else data_dir / "doppel.sqlite3"
    before = target.read_bytes()
    run = start(data_dir)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doppel: "), run.stderr
    assert expected in lines[0] and str(data_dir) in lines[0]
    assert target.read_bytes() == before  # refused, not extended or repaired


def test_the_store_refuses_the_same_in_process(tmp_path: Path) -> None:
    another_schema(tmp_path / "data")
    with pytest.raises(StoreUnusable, match="another schema"):
        SQLiteImageStore(Settings(data_dir=tmp_path / "data").data_dir / "doppel.sqlite3")
