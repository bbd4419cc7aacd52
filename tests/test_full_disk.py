"""A full disk, on a real full filesystem: writes answer 507 naming the store, with the real error
in the log; searches and reads keep working; writes come back once there is room, without a restart.

SQLite: the server runs on a small tmpfs mounted for it alone (a user namespace of its own, made
with unshare, needs no root). PostgreSQL: the test schema's tables go to a tablespace on a small
tmpfs (needs root, and the server on this machine).
"""

import logging
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pg
import psycopg
import pytest
from fastapi.testclient import TestClient
from helpers import encode, make_photo
from live_server import LiveServer
from psycopg import sql

from app.config import MIB, Settings
from app.factory import create_app
from app.store.sqlite import RESERVE_BYTES

PAD = "x" * 1000  # metadata that makes each record about 1 KiB: the disk fills in a few batches


def tmpfs_under(folder: Path, size: int) -> list[str]:
    """A command that mounts a tmpfs of `size` bytes on `folder`, seen only by the command it runs."""
    mount = f'mount -t tmpfs -o size={size} tmpfs "$0" && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, str(folder)]


@pytest.fixture
def small_disk(tmp_path: Path) -> list[str]:
    """The command that runs the server on a tmpfs of RESERVE_BYTES + 8 MiB over tmp_path/data."""
    data = tmp_path / "data"
    data.mkdir()
    command = tmpfs_under(data, RESERVE_BYTES + 8 * MIB)
    try:
        probe = subprocess.run([*command, "true"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        pytest.skip("unshare is not installed: cannot mount a small filesystem to fill")
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs in a user namespace (unshare): {probe.stderr.strip()}")
    return command


def fill(http: httpx.Client, prefix: str) -> tuple[int, httpx.Response]:
    """Add hash-only records in ever smaller batches until even one is refused; how many were
    stored, and the refusal."""
    stored = 0
    refused = None
    for size in (1000, 100, 10, 1):
        while True:
            items = [
                {"id": f"{prefix}{stored + n}", "hash": f"{stored + n:016x}", "metadata": {"pad": PAD}}
                for n in range(size)
            ]
            response = http.post("/images/batch", json={"items": items})
            if response.status_code != 201:
                refused = response
                break
            stored += size
    assert refused is not None
    return stored, refused


def test_sqlite_full_disk_refuses_writes_serves_reads_and_deletes_make_room(
    tmp_path: Path, small_disk: list[str]
) -> None:
    data = tmp_path / "data"
    with (
        LiveServer(data, under=small_disk) as server,
        httpx.Client(base_url=server.url, timeout=120) as http,
    ):
        stored, refused = fill(http, "img-")
        assert stored > 1000
        assert refused.status_code == 507, refused.text
        detail = refused.json()["detail"]
        assert "the store is full" in detail and str(data / "doppel.sqlite3") in detail
        assert "nothing was stored" in detail
        # The real error is logged, not the failed rollback that once hid it, and no 500.
        assert "is full: database or disk is full" in server.log
        assert "cannot rollback" not in server.log and "Traceback" not in server.log

        photo = encode(make_photo(1))
        assert http.post("/images", files={"file": photo}, data={"id": "photo"}).status_code == 507
        assert http.put("/images/photo", files={"file": photo}).status_code == 507
        assert http.get("/images/photo").status_code == 404  # nothing of the refused writes stored

        # Reads and searches keep working.
        assert http.get("/images/img-5").json()["metadata"] == {"pad": PAD}
        found = http.get("/search", params={"hash": f"{5:016x}", "max_distance": 0}).json()["matches"]
        assert [m["id"] for m in found] == ["img-5"]
        assert http.get("/health/ready").status_code == 200

        # Deletes work on the full disk (the first one is given the reserve) ...
        for n in range(300):
            assert http.delete(f"/images/img-{n}").status_code == 204
        assert "its reserve is given up to a delete" in server.log
        assert http.get("/images/img-5").status_code == 404
        found = http.get("/search", params={"hash": f"{5:016x}", "max_distance": 0}).json()["matches"]
        assert found == []
        # ... and make room for new images, without a restart; the rest is all there.
        created = http.post("/images", files={"file": photo}, data={"id": "photo"})
        assert created.status_code == 201, created.text
        matches = http.post("/search", files={"file": photo}).json()["matches"]
        assert [m["id"] for m in matches] == ["photo"]
        assert http.get("/health").json()["images"] == stored - 300 + 1
        assert http.get(f"/images/img-{stored - 1}").status_code == 200


@pytest.fixture
def full_tablespace(postgres_server: str) -> Iterator[tuple[str, Path]]:
    """A tablespace on a tmpfs of 3 MiB, and that tmpfs's folder (PostgreSQL's own, by ownership)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem for PostgreSQL's tablespace needs root")
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        data_directory = conn.execute("SHOW data_directory").fetchone()
        superuser = conn.execute("SELECT current_setting('is_superuser')").fetchone()
    assert data_directory is not None and superuser is not None
    owner = Path(data_directory[0])
    if not owner.is_dir() or superuser[0] != "on":
        pytest.skip("the PostgreSQL server is not on this machine, or the test's user is no superuser")
    server_user = pwd.getpwuid(owner.stat().st_uid)
    folder = Path(tempfile.mkdtemp(prefix="doppel-full-"))
    folder.chmod(0o755)  # the server's user must reach it
    options = f"size={3 * MIB},mode=0700,uid={server_user.pw_uid},gid={server_user.pw_gid}"
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)]).returncode != 0:
        folder.rmdir()
        pytest.skip("cannot mount a tmpfs")
    name = f"doppel_full_{secrets.token_hex(4)}"
    try:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE TABLESPACE {} LOCATION {}").format(sql.Identifier(name), str(folder))
            )
        try:
            yield name, folder
        finally:
            with psycopg.connect(postgres_server, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP TABLESPACE {}").format(sql.Identifier(name)))
    finally:
        subprocess.run(["umount", str(folder)], check=True)
        shutil.rmtree(folder)


def test_postgres_full_disk_refuses_writes_serves_reads_and_writes_once_there_is_room(
    tmp_path: Path,
    postgres_server: str,
    full_tablespace: tuple[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    tablespace, folder = full_tablespace
    with pg.fresh_schema(postgres_server) as url:
        # The schema's tables are made in the small tablespace (the server's own log stays where it is).
        url = url.replace("options=", f"options=-cdefault_tablespace%3D{tablespace}%20", 1)
        settings = Settings(data_dir=tmp_path / "data", database_url=url)
        with caplog.at_level(logging.ERROR, logger="doppel"), TestClient(create_app(settings)) as http:
            stored, refused = fill(http, "img-")
            assert stored > 100
            assert refused.status_code == 507, refused.text
            detail = refused.json()["detail"]
            assert "the store is full" in detail and "postgresql://postgres@" in detail
            assert "No space left on device" in caplog.text

            assert http.get("/images/img-5").json()["metadata"] == {"pad": PAD}
            found = http.get("/search", params={"hash": f"{5:016x}", "max_distance": 0}).json()["matches"]
            assert [m["id"] for m in found] == ["img-5"]

            # Room made on the disk: writes succeed again, without a restart.
            remount = f"remount,size={8 * MIB}"
            subprocess.run(["mount", "-o", remount, str(folder)], check=True)
            photo = encode(make_photo(1))
            assert http.post("/images", files={"file": photo}, data={"id": "photo"}).status_code == 201
            assert http.delete("/images/img-5").status_code == 204
            assert http.get("/health").json()["images"] == stored
