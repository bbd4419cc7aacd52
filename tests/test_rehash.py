"""`python main.py rehash`: records hashed by an older version of the hashing are counted, re-hashed
from their original files when given (matched by SHA-256, or by id for hash-only records), and
otherwise left matching with their old hashes. The start log counts them too."""

import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from golden import FILES
from live_server import REPO

from app.config import Settings
from app.factory import create_app
from app.imaging import HASHING_VERSION, hash_image_bytes
from app.models import ImageRecord, NewImage
from app.service import build_service
from app.store import ImageStore, open_store

OLD = HASHING_VERSION - 1
FLIPPED = (1 << 20) - 1  # the old hashing's hashes: 20 bits away from today's, too far to match


def old_image(image_id: str, file: str | None, **fields: object) -> NewImage:
    """A record as an older hashing made it: hashes 20 bits away from today's for `file`."""
    hashes = hash_image_bytes((FILES / (file or "large.jpg")).read_bytes(), max_pixels=10**8)
    return NewImage(
        id=image_id,
        dhash=hashes.dhash ^ FLIPPED,
        width=hashes.width,
        height=hashes.height,
        dhash_vertical=hashes.dhash_vertical ^ FLIPPED,
        dct_hash=hashes.dct_hash ^ FLIPPED,
        hashing_version=OLD,
        **fields,  # type: ignore[arg-type]
    )


def sha256_of(file: str) -> str:
    return hashlib.sha256((FILES / file).read_bytes()).hexdigest()


def fill(store: ImageStore) -> dict[str, ImageRecord]:
    images = [
        # uploaded: found by the SHA-256 of its bytes, whatever the file is called now
        old_image("cat", "baseline.jpg", metadata={"owner": "ann"}, sha256=sha256_of("baseline.jpg")),
        # added by its hashes: found by its id, a path relative to the folder
        NewImage(id="sub/large.jpg", dhash=1, width=None, height=None, hashing_version=OLD),
        # its file is gone
        old_image("gone", None, sha256="ab" * 32),
        # a file of that name is there, but not the bytes it was uploaded with
        old_image("rgb.png", "rgb.png", sha256="cd" * 32),
    ]
    current = hash_image_bytes((FILES / "grey.png").read_bytes(), max_pixels=10**8)
    images.append(NewImage(id="new", dhash=current.dhash, width=1, height=1, hashing_version=HASHING_VERSION))
    with store.writing() as write:
        return {record.id: record for record in write.add(images)}


def originals(tmp_path: Path) -> Path:
    folder = tmp_path / "originals"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(FILES / "baseline.jpg", folder / "renamed.jpg")
    shutil.copy(FILES / "large.jpg", folder / "sub" / "large.jpg")
    shutil.copy(FILES / "rgb.png", folder / "rgb.png")
    return folder


def rehash(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOPPEL_")}
    env["DOPPEL_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url is not None:
        env["DOPPEL_DATABASE_URL"] = settings.database_url
    return subprocess.run(
        [sys.executable, "main.py", "rehash", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def stored(settings: Settings) -> dict[str, ImageRecord]:
    store = open_store(settings)
    try:
        return {record.id: record for record in store.page(limit=100, after=None)}
    finally:
        store.close()


def test_without_originals_it_counts_and_changes_nothing(settings: Settings) -> None:
    store = open_store(settings)
    before = fill(store)
    store.close()
    run = rehash(settings)
    assert run.returncode == 0, run.stderr
    counted = "4 of 5 records were hashed by an older version of Doppel's hashing than this one's"
    assert f"{counted} ({HASHING_VERSION})" in run.stdout
    assert "rehash --from DIR" in run.stdout
    assert stored(settings) == before


def test_records_whose_originals_are_given_are_rehashed(settings: Settings, tmp_path: Path) -> None:
    store = open_store(settings)
    before = fill(store)
    store.close()
    run = rehash(settings, "--from", str(originals(tmp_path)))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 re-hashed from their files" in run.stdout and "2 left on their old hashes" in run.stdout
    after = stored(settings)
    for image_id, file in (("cat", "baseline.jpg"), ("sub/large.jpg", "large.jpg")):
        record, true = after[image_id], hash_image_bytes((FILES / file).read_bytes(), max_pixels=10**8)
        assert record.hashing_version == HASHING_VERSION
        assert (record.dhash, record.dhash_vertical, record.dct_hash, record.cuts) == (
            true.dhash,
            true.dhash_vertical,
            true.dct_hash,
            true.cuts,
        )
        assert (record.width, record.height, record.sha256) == (true.width, true.height, sha256_of(file))
        assert (record.metadata, record.created_at) == (
            before[image_id].metadata,
            before[image_id].created_at,
        )
        assert record.key > max(r.key for r in before.values())  # a replace in the log
    for image_id in ("gone", "rgb.png", "new"):
        assert after[image_id] == before[image_id]
    with TestClient(create_app(settings)) as client:
        found = client.post("/search", files={"file": ("f", (FILES / "baseline.jpg").read_bytes())}).json()
        assert {m["id"]: m["exact"] for m in found["matches"]}["cat"] is True
    again = rehash(settings, "--from", str(tmp_path / "originals")).stdout
    assert again.startswith("2 of 5 records") and "0 re-hashed" in again


def test_an_original_that_cannot_be_hashed_is_named(sqlite_settings: Settings, tmp_path: Path) -> None:
    store = open_store(sqlite_settings)
    with store.writing() as write:
        write.add([NewImage(id="broken.jpg", dhash=1, width=None, height=None, hashing_version=OLD)])
    store.close()
    folder = tmp_path / "originals"
    folder.mkdir()
    (folder / "broken.jpg").write_bytes((FILES / "baseline.jpg").read_bytes()[:300])
    run = rehash(sqlite_settings, "--from", str(folder))
    assert run.returncode == 1
    assert (
        f"not hashed: {folder / 'broken.jpg'}: " in run.stdout and "1 left on their old hashes" in run.stdout
    )
    assert stored(sqlite_settings)["broken.jpg"].hashing_version == OLD


def test_a_folder_that_is_not_there_is_refused(sqlite_settings: Settings, tmp_path: Path) -> None:
    run = rehash(sqlite_settings, "--from", str(tmp_path / "nowhere"))
    assert run.returncode == 2 and "not a folder" in run.stderr


def test_the_start_log_counts_the_records_on_an_older_hashing(
    sqlite_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(sqlite_settings)
    fill(store)
    service = build_service(sqlite_settings, store=store)
    with caplog.at_level(logging.INFO, logger="doppel"):
        service.start()
    service.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].startswith("4 records were hashed by an older version")
