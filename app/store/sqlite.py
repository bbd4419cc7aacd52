"""SQLite store: one file in the data folder, WAL mode, one connection serialised by a lock."""

import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from app.errors import ImageExists
from app.models import ImageRecord, NewImage
from app.store.base import format_time, refuse_repeated_ids

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    key INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: keys are never reused
    id TEXT NOT NULL UNIQUE,
    dhash INTEGER NOT NULL,                 -- 64-bit hashes stored as signed integers
    dhash_vertical INTEGER,
    dct_hash INTEGER,
    sha256 BLOB,
    width INTEGER,
    height INTEGER,
    created_at INTEGER NOT NULL,            -- microseconds since the Unix epoch, UTC
    metadata TEXT                           -- JSON object, NULL when empty
)
"""
_COLUMNS = "key, id, dhash, dhash_vertical, dct_hash, sha256, width, height, created_at, metadata"
_INSERT = (
    "INSERT INTO images (key, id, dhash, dhash_vertical, dct_hash, sha256, width, height, created_at, metadata) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_I64 = 1 << 63
_U64 = 1 << 64


class SQLiteImageStore:
    """ImageStore in a SQLite file. A commit is durable (synchronous=FULL) before it returns."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the request threads; the lock serialises its use.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def add(self, images: list[NewImage]) -> list[ImageRecord]:
        refuse_repeated_ids(images)
        with self._lock, self._transaction():
            taken = self._existing_ids([image.id for image in images])
            if taken:
                raise ImageExists(taken)
            return self._insert(images)

    def replace(self, image: NewImage) -> tuple[ImageRecord, ImageRecord | None]:
        with self._lock, self._transaction():
            old = self._get(image.id)
            if old is not None:
                self._db.execute("DELETE FROM images WHERE key = ?", (old.key,))
            return self._insert([image])[0], old

    def get(self, image_id: str) -> ImageRecord | None:
        with self._lock:
            return self._get(image_id)

    def get_by_keys(self, keys: list[int]) -> dict[int, ImageRecord]:
        if not keys:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM images WHERE key IN (SELECT value FROM json_each(?))",
                (json.dumps(keys),),
            ).fetchall()
        return {row[0]: _record(row) for row in rows}

    def delete(self, image_id: str) -> ImageRecord | None:
        with self._lock, self._transaction():
            old = self._get(image_id)
            if old is not None:
                self._db.execute("DELETE FROM images WHERE key = ?", (old.key,))
            return old

    def page(self, *, limit: int, after: str | None) -> list[ImageRecord]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM images WHERE id > ? ORDER BY id LIMIT ?",
                ("" if after is None else after, limit),
            ).fetchall()
        return [_record(row) for row in rows]

    def iter_hashes(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last_key = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT key, dhash FROM images WHERE key > ? ORDER BY key LIMIT ?",
                    (last_key, batch_size),
                ).fetchall()
            if not rows:
                return
            table = np.array(rows, dtype=np.int64)
            yield table[:, 0], table[:, 1].view(np.uint64)
            last_key = int(table[-1, 0])

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM images").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _transaction(self) -> "_Transaction":
        return _Transaction(self._db)

    def _get(self, image_id: str) -> ImageRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
        return None if row is None else _record(row)

    def _existing_ids(self, ids: list[str]) -> list[str]:
        rows = self._db.execute(
            "SELECT id FROM images WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),)
        ).fetchall()
        taken = {row[0] for row in rows}
        return [i for i in ids if i in taken]

    def _insert(self, images: list[NewImage]) -> list[ImageRecord]:
        # One executemany with the keys assigned here: a batch of 10,000 rows is one statement,
        # not 10,000 round trips through the sqlite3 module.
        created_at = _now_micros()
        first_key = self._next_key()
        self._db.executemany(
            _INSERT,
            [
                (
                    first_key + n,
                    image.id,
                    _to_signed(image.dhash),
                    _to_signed_or_none(image.dhash_vertical),
                    _to_signed_or_none(image.dct_hash),
                    bytes.fromhex(image.sha256) if image.sha256 else None,
                    image.width,
                    image.height,
                    created_at,
                    json.dumps(image.metadata, separators=(",", ":")) if image.metadata else None,
                )
                for n, image in enumerate(images)
            ],
        )
        created = _format_micros(created_at)
        return [
            ImageRecord(
                key=first_key + n,
                id=image.id,
                dhash=image.dhash,
                width=image.width,
                height=image.height,
                created_at=created,
                metadata=dict(image.metadata),
                dhash_vertical=image.dhash_vertical,
                dct_hash=image.dct_hash,
                sha256=image.sha256,
            )
            for n, image in enumerate(images)
        ]

    def _next_key(self) -> int:
        """One past the largest key ever used (AUTOINCREMENT's counter), so keys are never reused.

        Called inside the write transaction, so no other writer can take the same keys.
        """
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'images'").fetchone()
        return (row[0] if row else 0) + 1


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:
            self._db.execute("ROLLBACK")
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            # A failed COMMIT (disk full, I/O error) can leave the transaction open; every later
            # BEGIN would then fail. Roll back so that only this write is lost, and say so.
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise


def _record(row: tuple) -> ImageRecord:
    key, image_id, dhash, dhash_vertical, dct_hash, sha256, width, height, created_at, metadata = row
    return ImageRecord(
        key=key,
        id=image_id,
        dhash=dhash % _U64,
        width=width,
        height=height,
        created_at=_format_micros(created_at),
        metadata=json.loads(metadata) if metadata else {},
        dhash_vertical=None if dhash_vertical is None else dhash_vertical % _U64,
        dct_hash=None if dct_hash is None else dct_hash % _U64,
        sha256=sha256.hex() if sha256 else None,
    )


def _to_signed(value: int) -> int:
    return value - _U64 if value >= _I64 else value


def _to_signed_or_none(value: int | None) -> int | None:
    return None if value is None else _to_signed(value)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _now_micros() -> int:
    return (datetime.now(UTC) - _EPOCH) // timedelta(microseconds=1)


def _format_micros(micros: int) -> str:
    return format_time(_EPOCH + timedelta(microseconds=micros))
