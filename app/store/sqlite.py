"""SQLite store: one file, WAL mode. Several processes may share it: writers take the file's write
lock (BEGIN IMMEDIATE), readers read committed data beside them."""

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ImageExists, StoreUnavailable
from app.models import ImageRecord, Metadata, NewImage
from app.store.base import Changes, StoreUnusable, Wake, refuse_repeated_ids
from app.store.columns import COLUMNS, now_micros, record_of_new, record_of_row, row_of

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    key INTEGER PRIMARY KEY AUTOINCREMENT,  -- the log position that added it
    id TEXT NOT NULL UNIQUE,
    dhash INTEGER NOT NULL,                 -- 64-bit hashes stored as signed integers
    dhash_vertical INTEGER,
    dct_hash INTEGER,
    sha256 BLOB,
    width INTEGER,
    height INTEGER,
    created_at INTEGER NOT NULL,            -- microseconds since the Unix epoch, UTC
    metadata TEXT                           -- JSON object, NULL when empty
);
CREATE TABLE IF NOT EXISTS log_head (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
    position INTEGER NOT NULL,
    identity TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tombstones (
    position INTEGER PRIMARY KEY,
    key INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS thumbnails (
    key INTEGER PRIMARY KEY,                -- the image's key, deleted with the image
    data BLOB NOT NULL                      -- WebP
);
"""
_TABLES = {"images", "log_head", "tombstones", "thumbnails"}
_INSERT = f"INSERT INTO images ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# How long a writer waits for another process's write transaction before giving up (503).
BUSY_TIMEOUT_MS = 30_000


class SQLiteImageStore:
    """ImageStore in a SQLite file. A commit is durable (synchronous=FULL) before it returns."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnusable(f"the data folder {path.parent} cannot be used: {exc.strerror}") from exc
        self.path = path
        # Writes go through one connection (the lock serialises this process's writers; the file's
        # lock, the other processes'). Reads use a connection per thread, so they never wait for
        # a write transaction, which may be held while the index catches up.
        self._write_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._idle_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        try:
            self._writer = self._connect()
        except sqlite3.DatabaseError as exc:
            raise StoreUnusable(f"the database {path} cannot be used: {_why(exc)}") from exc
        try:
            with _unavailable(path):
                self._check()
                self._writer.execute("PRAGMA journal_mode=WAL")
                self._create_schema()
                self.identity: str = self._writer.execute("SELECT identity FROM log_head").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            self._writer.close()
            raise StoreUnusable(f"the database {path} cannot be used: {_why(exc)}") from exc
        except StoreUnusable:
            self._writer.close()
            raise

    def _check(self) -> None:
        """Refuse a file written by a newer Doppel, another application's database, or a damaged one."""
        (version,) = self._writer.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreUnusable(
                f"the database {self.path} was written by a newer Doppel (schema {version}; "
                f"this one knows up to {SCHEMA_VERSION})"
            )
        tables = {
            name
            for (name,) in self._writer.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        columns = [row[1] for row in self._writer.execute("PRAGMA table_info(images)")]
        if not tables <= _TABLES or (columns and ", ".join(columns) != COLUMNS):
            shown = ", ".join(sorted(tables))
            raise StoreUnusable(
                f"the database {self.path} holds another schema than Doppel's (tables: {shown})"
            )
        if _truncated(self.path):
            raise StoreUnusable(f"the database {self.path} is damaged: shorter than its header says")

    def _connect(self) -> sqlite3.Connection:
        with _unavailable(self.path):
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA synchronous=FULL")
        return db

    def _create_schema(self) -> None:
        with self._write_lock, _Transaction(self._writer):
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._writer.execute(statement)
            # A store written before the log existed: its head is the largest key ever used.
            self._writer.execute(
                "INSERT OR IGNORE INTO log_head VALUES (0, "
                "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'images'), 0), ?)",
                (secrets.token_hex(16),),
            )
            self._writer.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def writing(self) -> Iterator["_SQLiteWrite"]:
        with self._write_lock, _unavailable(self.path), _Transaction(self._writer):
            head = int(self._writer.execute("SELECT position FROM log_head").fetchone()[0])
            write = _SQLiteWrite(self._writer, head)
            yield write
            if write.position != head:
                self._writer.execute("UPDATE log_head SET position = ?", (write.position,))

    def head(self) -> int:
        return int(self._read("SELECT position FROM log_head")[0][0])

    def changes(self, after: int, upto: int) -> Changes:
        added = self._read(
            "SELECT key, dhash FROM images WHERE key > ? AND key <= ? ORDER BY key", (after, upto)
        )
        removed = self._read("SELECT key FROM tombstones WHERE position > ? AND position <= ?", (after, upto))
        keys, hashes = _key_hash_arrays(added)
        return Changes(keys, hashes, np.array([row[0] for row in removed], dtype=np.int64))

    def iter_hashes(self, batch_size: int, *, upto: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last_key = 0
        while True:
            rows = self._read(
                "SELECT key, dhash FROM images WHERE key > ? AND key <= ? ORDER BY key LIMIT ?",
                (last_key, upto, batch_size),
            )
            if not rows:
                return
            keys, hashes = _key_hash_arrays(rows)
            yield keys, hashes
            last_key = int(keys[-1])

    def get(self, image_id: str) -> ImageRecord | None:
        rows = self._read(f"SELECT {COLUMNS} FROM images WHERE id = ?", (image_id,))
        return _record(rows[0]) if rows else None

    def get_by_keys(self, keys: list[int]) -> dict[int, ImageRecord]:
        if not keys:
            return {}
        rows = self._read(
            f"SELECT {COLUMNS} FROM images WHERE key IN (SELECT value FROM json_each(?))",
            (json.dumps(keys),),
        )
        return {row[0]: _record(row) for row in rows}

    def thumbnail(self, image_id: str) -> bytes | None:
        rows = self._read(
            "SELECT data FROM thumbnails WHERE key = (SELECT key FROM images WHERE id = ?)", (image_id,)
        )
        return bytes(rows[0][0]) if rows else None

    def page(self, *, limit: int, after: str | None) -> list[ImageRecord]:
        rows = self._read(
            f"SELECT {COLUMNS} FROM images WHERE id > ? ORDER BY id LIMIT ?",
            ("" if after is None else after, limit),
        )
        return [_record(row) for row in rows]

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM images")[0][0])

    def on_change(self, wake: Wake) -> None:
        """SQLite cannot tell: readers poll head()."""

    def describe(self) -> str:
        return str(self.path.resolve())

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
        with self._readers_lock:
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            self._idle_readers.clear()

    def _read(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with _unavailable(self.path), self._reader() as reader:
            return reader.execute(sql, parameters).fetchall()

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """A read connection lent for one query: as many are kept as reads ever ran at once (a
        connection per thread would grow with every worker thread the server starts and retires)."""
        with self._readers_lock:
            reader = self._idle_readers.pop() if self._idle_readers else None
        if reader is None:
            reader = self._connect()
            with self._readers_lock:
                self._readers.append(reader)
        try:
            yield reader
        finally:
            with self._readers_lock:
                self._idle_readers.append(reader)


class _SQLiteWrite:
    """WriteTransaction on the writer connection, inside BEGIN IMMEDIATE."""

    def __init__(self, db: sqlite3.Connection, head: int) -> None:
        self._db = db
        self.head = head
        self.position = head

    def add(self, images: list[NewImage]) -> list[ImageRecord]:
        refuse_repeated_ids(images)
        taken = self._existing_ids([image.id for image in images])
        if taken:
            raise ImageExists(taken)
        return self._insert(images)

    def replace(self, image: NewImage) -> tuple[ImageRecord, ImageRecord | None]:
        old = self.delete(image.id)
        return self._insert([image])[0], old

    def delete(self, image_id: str) -> ImageRecord | None:
        row = self._db.execute(f"SELECT {COLUMNS} FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            return None
        old = _record(row)
        self.position += 1
        self._db.execute("DELETE FROM images WHERE key = ?", (old.key,))
        self._db.execute("DELETE FROM thumbnails WHERE key = ?", (old.key,))
        self._db.execute("INSERT INTO tombstones (position, key) VALUES (?, ?)", (self.position, old.key))
        return old

    def _existing_ids(self, ids: list[str]) -> list[str]:
        rows = self._db.execute(
            "SELECT id FROM images WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),)
        ).fetchall()
        taken = {row[0] for row in rows}
        return [i for i in ids if i in taken]

    def _insert(self, images: list[NewImage]) -> list[ImageRecord]:
        # One executemany with the keys assigned here: a batch of 10,000 rows is one statement,
        # not 10,000 round trips through the sqlite3 module.
        created_at = now_micros()
        first_key = self.position + 1
        self.position += len(images)
        self._db.executemany(
            _INSERT,
            [
                row_of(first_key + n, image, created_at, _metadata_text(image.metadata))
                for n, image in enumerate(images)
            ],
        )
        self._db.executemany(
            "INSERT INTO thumbnails (key, data) VALUES (?, ?)",
            [(first_key + n, image.thumbnail) for n, image in enumerate(images) if image.thumbnail],
        )
        return [record_of_new(first_key + n, image, created_at) for n, image in enumerate(images)]


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None:
            if self._db.in_transaction:
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


@contextmanager
def _unavailable(path: Path) -> Iterator[None]:
    """A file locked by another process for longer than the busy timeout is a 503, not a 500."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise StoreUnavailable(f"the database {path} is locked by another writer: {exc}") from exc
        raise


def _truncated(path: Path) -> bool:
    """Whether the file is shorter than the size its header records (a cut copy, a partial
    restore). A check of every page (PRAGMA quick_check) would read the whole file at every start:
    seconds at 10M images."""
    with path.open("rb") as handle:
        header = handle.read(100)
    if len(header) < 100:
        return False  # a new, empty file
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    header_size_valid = header[24:28] == header[92:96]  # as SQLite decides whether to trust it
    return header_size_valid and path.stat().st_size < pages * page_size


def _why(exc: sqlite3.DatabaseError) -> str:
    """What SQLite's error means for the person who starts the server."""
    message = str(exc)
    if "not a database" in message:
        return "it is not a SQLite database"
    if "malformed" in message:
        return "it is damaged (database disk image is malformed)"
    if "readonly" in message or "unable to open" in message:
        return f"it cannot be written or created ({message}): check the folder's permissions"
    return message


def _key_hash_arrays(rows: list[tuple[Any, ...]]) -> tuple[np.ndarray, np.ndarray]:
    table = np.array(rows, dtype=np.int64).reshape(-1, 2)
    return table[:, 0].copy(), table[:, 1].view(np.uint64).copy()


def _record(row: tuple[Any, ...]) -> ImageRecord:
    metadata = row[-1]
    return record_of_row(row, json.loads(metadata) if metadata else {})


def _metadata_text(metadata: Metadata) -> str | None:
    return json.dumps(metadata, separators=(",", ":")) if metadata else None
