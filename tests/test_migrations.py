"""Schema versions: a store written by an older Doppel is brought forward at start and keeps every
image; a newer one is refused; a failed migration leaves the store as it was; replicas starting at
once on one PostgreSQL database migrate it once.

tests/data/store-schema-1.sqlite3 was written by Doppel at schema 1 (six real files uploaded, one
of them deleted, and one hash-only record); its PostgreSQL twin is built from
tests/data/store-schema-1.postgres.sql and the same rows."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pg
import psycopg
import pytest
from fastapi.testclient import TestClient
from golden import FILES
from live_server import REPO

from app.config import Settings
from app.factory import create_app
from app.imaging import HASHING_VERSION
from app.store import ImageStore, open_store
from app.store import migrations as schema
from app.store.base import StoreUnusable
from app.store.migrations import MIGRATIONS, SCHEMA_VERSION, Migration
from app.store.postgres import _SCHEMA_LOCK, PostgresImageStore

DATA = Path(__file__).resolve().parent / "data"
V1_SQLITE = DATA / "store-schema-1.sqlite3"
V1_POSTGRES = DATA / "store-schema-1.postgres.sql"
V1_COLUMNS = "key, id, dhash, dhash_vertical, dct_hash, sha256, width, height, created_at, metadata"
UPLOADED = ["baseline.jpg", "grey.png", "large.jpg", "lossy.webp", "palette.gif"]
DELETED = "rgb.png"
HANG = 60  # seconds: only to stop a hung run


def v1_tables() -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(f"file:{V1_SQLITE}?mode=ro", uri=True)
    try:
        return {
            "images": db.execute(f"SELECT {V1_COLUMNS} FROM images ORDER BY key").fetchall(),
            "log_head": db.execute("SELECT position, identity FROM log_head").fetchall(),
            "tombstones": db.execute("SELECT position, key FROM tombstones").fetchall(),
        }
    finally:
        db.close()


def make_v1_postgres(url: str) -> None:
    tables = v1_tables()
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(V1_POSTGRES.read_text())
        with conn.cursor() as cursor:
            cursor.executemany(
                f"INSERT INTO images ({V1_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json)",
                tables["images"],
            )
            cursor.executemany(
                "INSERT INTO log_head (position, identity) VALUES (%s, %s)", tables["log_head"]
            )
            cursor.executemany("INSERT INTO tombstones (position, key) VALUES (%s, %s)", tables["tombstones"])


@pytest.fixture(params=["sqlite", "postgres"])
def v1_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings on a store at schema 1, in SQLite or PostgreSQL."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if request.param == "sqlite":
        shutil.copy(V1_SQLITE, data_dir / "doppel.sqlite3")
        return Settings(data_dir=data_dir)
    url: str = request.getfixturevalue("postgres_url")
    make_v1_postgres(url)
    return Settings(data_dir=data_dir, database_url=url)


def recorded_version(settings: Settings) -> int:
    if settings.database_path is not None:
        db = sqlite3.connect(settings.database_path)
        try:
            return int(db.execute("PRAGMA user_version").fetchone()[0])
        finally:
            db.close()
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute("SELECT version FROM doppel_schema").fetchone()
    assert row is not None
    return int(row[0])


def set_version(settings: Settings, version: int) -> None:
    if settings.database_path is not None:
        db = sqlite3.connect(settings.database_path)
        db.execute(f"PRAGMA user_version={version}")
        db.close()
        return
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("UPDATE doppel_schema SET version = %s", (version,))


def test_a_schema_1_store_is_migrated_and_keeps_every_image(v1_settings: Settings) -> None:
    tables = v1_tables()
    store = open_store(v1_settings)
    try:
        assert store.migrated_from == 1
        assert recorded_version(v1_settings) == SCHEMA_VERSION
        records = {r.id: r for r in store.page(limit=100, after=None)}
        assert sorted(records) == sorted(row[1] for row in tables["images"])
        for key, image_id, dhash, vertical, dct, sha256, width, height, created_at, metadata in tables[
            "images"
        ]:
            record = records[image_id]
            unsigned = [None if v is None else v % (1 << 64) for v in (dhash, vertical, dct)]
            assert [record.key, record.dhash, record.dhash_vertical, record.dct_hash] == [key, *unsigned]
            assert (record.sha256, record.width, record.height) == (sha256 and sha256.hex(), width, height)
            assert record.metadata == (json.loads(metadata) if metadata else {})
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=created_at)
            assert datetime.fromisoformat(record.created_at) == moment
            assert record.hashing_version == 1
        assert (store.head(), store.identity) == tables["log_head"][0]
        assert store.changes(0, store.head()).removed_keys.tolist() == [
            row[1] for row in tables["tombstones"]
        ]
    finally:
        store.close()
    again = open_store(v1_settings)
    assert again.migrated_from is None  # recorded: not migrated twice
    again.close()


def test_a_migrated_store_matches_its_images(v1_settings: Settings) -> None:
    with TestClient(create_app(v1_settings)) as client:
        for name in UPLOADED:
            response = client.post("/search", files={"file": (name, (FILES / name).read_bytes())})
            matches = {m["id"]: m for m in response.json()["matches"]}
            assert matches[name]["exact"] is True and matches[name]["distance"] == 0
        deleted = client.post("/search", files={"file": (DELETED, (FILES / DELETED).read_bytes())})
        assert DELETED not in {m["id"] for m in deleted.json()["matches"]}
        assert client.get("/images/hash-only").json()["hashing_version"] == 1
        added = client.post("/images", files={"file": ("rgb.png", (FILES / DELETED).read_bytes())})
        assert added.status_code == 201 and added.json()["hashing_version"] == HASHING_VERSION


def run_main(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOPPEL_")}
    env |= {"DOPPEL_DATA_DIR": str(settings.data_dir), "DOPPEL_PORT": "0"}
    if settings.database_url is not None:
        env["DOPPEL_DATABASE_URL"] = settings.database_url
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("command", [[], ["rehash"]])
def test_a_newer_store_is_refused_by_the_cli(settings: Settings, command: list[str]) -> None:
    open_store(settings).close()
    set_version(settings, SCHEMA_VERSION + 1)
    run = run_main(settings, *command)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("doppel: "), run.stderr
    url = settings.database_url
    where = str(settings.database_path) if url is None else pg.application_name(url)
    assert where in lines[0]
    expected = (
        f"written by a newer Doppel (schema {SCHEMA_VERSION + 1}; this one knows up to {SCHEMA_VERSION})"
    )
    assert expected in lines[0]
    assert recorded_version(settings) == SCHEMA_VERSION + 1  # left as it was


def test_a_failed_migration_leaves_the_store_as_it_was(
    v1_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    breaking = Migration(
        sqlite=("ALTER TABLE images ADD COLUMN extra INTEGER", "SELECT * FROM no_such_table"),
        postgres=("ALTER TABLE images ADD COLUMN extra INTEGER", "SELECT * FROM no_such_table"),
    )
    monkeypatch.setattr(schema, "MIGRATIONS", (*MIGRATIONS, breaking))
    with pytest.raises(
        StoreUnusable, match=f"could not be migrated from schema 1 to {SCHEMA_VERSION + 1}.*no_such"
    ):
        open_store(v1_settings)
    monkeypatch.undo()
    store = open_store(v1_settings)  # still at 1: migration 2 was rolled back with the failed one
    try:
        assert store.migrated_from == 1
        assert store.count() == len(v1_tables()["images"])
    finally:
        store.close()


def test_replicas_starting_at_once_migrate_postgres_once(postgres_url: str) -> None:
    make_v1_postgres(postgres_url)
    opened: list[ImageStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            opened.append(PostgresImageStore(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    starting = [threading.Thread(target=start) for _ in range(3)]
    # The test holds the migration lock until every replica waits for it, so that they all
    # reach the migration at once.
    with psycopg.connect(postgres_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        for thread in starting:
            thread.start()
        deadline = datetime.now(UTC) + timedelta(seconds=HANG)
        while waiting(postgres_url) < len(starting):
            assert datetime.now(UTC) < deadline and not errors, errors
        holder.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
    for thread in starting:
        thread.join(HANG)
    try:
        assert not errors and len(opened) == len(starting)
        assert sorted(store.migrated_from is not None for store in opened) == [False, False, True]
        assert {store.identity for store in opened} == {v1_tables()["log_head"][0][1]}
        assert opened[0].count() == len(v1_tables()["images"])
    finally:
        for store in opened:
            store.close()


def waiting(url: str) -> int:
    """How many of the connections made with `url` wait for a lock."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
            (pg.application_name(url),),
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_store_at_this_version_opens_while_another_process_writes(settings: Settings) -> None:
    open_store(settings).close()
    opened: list[ImageStore] = []
    if settings.database_path is not None:  # another process in a write transaction
        writer = sqlite3.connect(settings.database_path, isolation_level=None)
        writer.execute("BEGIN IMMEDIATE")
        opened.append(open_store(settings))
        writer.execute("ROLLBACK")
        writer.close()
    else:  # another replica migrating (as far as the lock says)
        assert settings.database_url is not None
        with psycopg.connect(settings.database_url, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            thread = threading.Thread(target=lambda: opened.append(open_store(settings)))
            thread.start()
            thread.join(HANG)
            opened_under_the_lock = not thread.is_alive()
            holder.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
        thread.join(HANG)
        assert opened_under_the_lock
    assert len(opened) == 1 and opened[0].migrated_from is None
    opened[0].close()
