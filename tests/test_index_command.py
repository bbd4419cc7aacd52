"""`python main.py index DIR... --url URL` against the real server: ids and metadata, a second run
that sends only what the service lacks, refused files reported and skipped, the API key, batches
the service finds too large sent again in halves."""

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import SHARED_IMAGES, encode, make_photo, needs_shared
from live_server import REPO, LiveServer

from app.cli import main
from app.scan.indexer import path_id

API_KEY = "index-test-key-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with LiveServer(tmp_path_factory.mktemp("data")) as live:
        yield live


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server with an API key, small files and small batches."""
    data = tmp_path_factory.mktemp("guarded")
    with LiveServer(data, api_key=API_KEY, max_upload_bytes="60000", max_batch_bytes="130000") as live:
        yield live


def _stored(server: LiveServer, headers: dict[str, str] | None = None) -> dict[str, dict[str, object]]:
    response = httpx.get(f"{server.url}/images", params={"limit": 1000}, headers=headers)
    response.raise_for_status()
    return {r["id"]: r["metadata"] for r in response.json()["items"]}


def _folder(root: Path, seeds: range, *, size: tuple[int, int] = (320, 240)) -> Path:
    (root / "album 1").mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        where = root / "album 1" if seed % 2 else root
        (where / f"{seed}%.jpg").write_bytes(encode(make_photo(seed, size), "JPEG", quality=85))
    return root


def test_index_sends_what_the_service_lacks(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOPPEL_API_KEY", raising=False)
    folder = _folder(tmp_path / "photos", range(1, 5))
    (folder / "readme.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes((folder / "2%.jpg").read_bytes()[:400])

    assert main(["index", str(folder), "--url", server.url, "--metadata", '{"owner": "ann"}']) == 0
    out = capsys.readouterr().out
    assert "4 images stored, 0 already there, 2 refused or skipped" in out
    assert f"refused {folder / 'readme.txt'}: not an image" in out
    assert f"refused {folder / 'broken.jpg'}: 422:" in out  # the service's answer for a damaged image
    stored = _stored(server)
    assert stored["album 1%2F1%25.jpg"] == {"owner": "ann", "path": "album 1/1%.jpg"}
    assert {path_id(p) for p in ("2%.jpg", "album 1/3%.jpg", "4%.jpg")} <= set(stored)

    # Interrupted or not, a second run sends only the new file.
    (folder / "album 1" / "5%.jpg").write_bytes(encode(make_photo(5), "JPEG"))
    assert main(["index", str(folder), "--url", server.url]) == 0
    assert "1 images stored, 4 already there, 2 refused or skipped" in capsys.readouterr().out
    assert "album 1%2F5%25.jpg" in _stored(server)


def test_index_by_content_sends_each_picture_once(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path / "photos", range(11, 13))
    copy = folder / "copy.jpg"
    copy.write_bytes((folder / "12%.jpg").read_bytes())
    assert main(["index", str(folder), "--url", server.url, "--id-from", "sha256", "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "2 images stored, 0 already there, 1 refused or skipped" in out
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert f"refused {copy}: id '{digest}' is also that of" in out
    assert _stored(server)[digest]["path"] == "12%.jpg"


def test_index_refuses_a_bad_metadata_or_an_absent_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path / "photos", range(1, 2))
    assert main(["index", str(folder), "--url", "http://127.0.0.1:9", "--metadata", "[1]"]) == 2
    assert "--metadata must be a JSON object" in capsys.readouterr().err
    assert main(["index", str(folder), "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot reach http://127.0.0.1:9" in capsys.readouterr().err


def test_index_with_the_api_key_splits_what_the_service_finds_too_large(
    guarded: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _folder(tmp_path / "photos", range(21, 27))  # ~20-30 KB each: 6 of them exceed a batch
    big = folder / "big.png"
    big.write_bytes(encode(make_photo(30, (400, 300)), "PNG"))  # over the 60,000-byte file limit
    assert big.stat().st_size > 60000

    monkeypatch.delenv("DOPPEL_API_KEY", raising=False)
    assert main(["index", str(folder), "--url", guarded.url]) == 2
    assert "refused the API key" in capsys.readouterr().err

    monkeypatch.setenv("DOPPEL_API_KEY", API_KEY)
    assert main(["index", str(folder), "--url", guarded.url]) == 0
    out = capsys.readouterr().out
    assert "6 images stored, 0 already there, 1 refused or skipped" in out
    assert f"refused {big}: 413:" in out
    stored = _stored(guarded, {"Authorization": f"Bearer {API_KEY}"})
    assert len(stored) == 6 and "big.png" not in stored


@needs_shared
def test_python_main_index_loads_the_shared_photos(server: LiveServer, tmp_path: Path) -> None:
    command = [sys.executable, "main.py", "index", str(SHARED_IMAGES / "natural"), "--url", server.url]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "9 images stored, 0 already there, 1 refused or skipped"
    assert "sending:" in done.stderr and "9/9" in done.stderr
    # What the scan groups, the service finds as duplicates: 0065_1.webp is a copy of 0065.jpg.
    response = httpx.get(f"{server.url}/images/0065_1.webp/duplicates")
    assert "0065.jpg" in [m["id"] for m in response.json()["matches"]]
    assert _stored(server)["0065.jpg"] == {"path": "0065.jpg"}
