"""SQLite store: one file, WAL mode. Several processes may share it: writers take the file's write
lock (BEGIN IMMEDIATE), readers read committed data beside them."""

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from app.errors import ImageExists, StoreFull, StoreUnavailable
from app.models import ImageRecord, Metadata, NewImage
from app.store.base import (
    CUT_COLUMNS,
    HASH_COLUMNS,
    Changes,
    StoredHashes,
    StoreUnusable,
    Wake,
    refuse_repeated_ids,
)
from app.store.columns import COLUMNS, now_micros, record_of_new, record_of_row, row_of
from app.store.migrations import failed, pending

# The tables of Doppel's files from before the schema's version was recorded (user_version 0).
_UNVERSIONED_TABLES = {"images", "log_head", "tombstones"}
_UNVERSIONED_COLUMNS = "key, id, dhash, dhash_vertical, dct_hash, sha256, width, height, created_at, metadata"
_INSERT = f"INSERT INTO images ({COLUMNS}) VALUES ({', '.join('?' * len(COLUMNS.split(',')))})"
# How long a writer waits for another process's write transaction before giving up (503).
BUSY_TIMEOUT_MS = 30_000
_WAL_RETRY_S = 0.01  # how soon a refused switch to WAL mode is asked again
# Room held on the store's disk for deletes: a delete appends to the write-ahead log as any write
# does, so on a full disk it needs room too. A file of this size beside the database is given up to
# the delete that finds the disk full (room for thousands of deletes and a checkpoint of the log,
# whose automatic checkpoints start at 4 MiB), and made again once the disk has room. Until then
# additions may only fill the room deletes freed inside the database, never grow it into the
# reserve's room.
RESERVE_BYTES = 8 * 1024 * 1024

logger = logging.getLogger("doppel")


class SQLiteImageStore:
    """ImageStore in a SQLite file. A commit is durable (synchronous=FULL) before it returns."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnusable(f"the data folder {path.parent} cannot be used: {exc.strerror}") from exc
        self.path = path
        self._reserve = _Reserve(path.with_name(f"{path.name}-reserve"))
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
            with _store_errors(path):
                self._check()
                self._use_wal()
                self.migrated_from = self._migrate()
                self.identity: str = self._writer.execute("SELECT identity FROM log_head").fetchone()[0]
                self._max_pages: int = self._writer.execute("PRAGMA max_page_count").fetchone()[0]
            self._reserve.hold()
        except sqlite3.DatabaseError as exc:
            self._writer.close()
            raise StoreUnusable(f"the database {path} cannot be used: {_why(exc)}") from exc
        except StoreUnusable:
            self._writer.close()
            raise

    def _use_wal(self) -> None:
        """Put the file in WAL mode (a mode of the file, kept). Two processes opening a new file at
        once both ask for it, and SQLite answers one "database is locked" at once rather than wait
        where waiting could deadlock: the other's switch is then under way, so ask again, until
        the busy timeout."""
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._writer.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(_WAL_RETRY_S)

    def _check(self) -> None:
        """Refuse, before changing anything, a file written by a newer Doppel, another application's
        database, or a damaged one."""
        # One read transaction: a schema another process creates meanwhile is seen whole or not at all.
        self._writer.execute("BEGIN")
        try:
            (version,) = self._writer.execute("PRAGMA user_version").fetchone()
            tables = {
                name
                for (name,) in self._writer.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                )
            }
            columns = [row[1] for row in self._writer.execute("PRAGMA table_info(images)")]
        finally:
            self._writer.execute("COMMIT")
        pending(version, f"the database {self.path}")
        if version == 0:
            # Empty, or Doppel's from before the version was recorded, or another application's.
            same_columns = not columns or ", ".join(columns) == _UNVERSIONED_COLUMNS
            doppels = tables <= _UNVERSIONED_TABLES and same_columns
        else:
            doppels = _UNVERSIONED_TABLES <= tables
        if not doppels:
            shown = ", ".join(sorted(tables))
            raise StoreUnusable(
                f"the database {self.path} holds another schema than Doppel's (tables: {shown})"
            )
        if _truncated(self.path):
            raise StoreUnusable(f"the database {self.path} is damaged: shorter than its header says")

    def _migrate(self) -> int | None:
        """Bring the schema to this code's version; return the version it was at, or None if it was
        there. Nothing is written, nor the file's write lock taken, when it is there; else the
        version is read again under the lock: another process may have just done it."""
        database = f"the database {self.path}"
        if not pending(self._writer.execute("PRAGMA user_version").fetchone()[0], database):
            return None
        with self._write_lock, _Transaction(self._writer):
            (version,) = self._writer.execute("PRAGMA user_version").fetchone()
            migrations = pending(version, database)
            if not migrations:
                return None
            try:
                for migration in migrations:
                    for statement in migration.sqlite:
                        self._writer.execute(statement)
            except sqlite3.DatabaseError as exc:
                if _busy(exc):
                    raise
                raise failed(database, version, str(exc)) from exc
            # user_version is part of the transaction: a failed migration leaves the old version.
            self._writer.execute(f"PRAGMA user_version={version + len(migrations)}")
            return int(version)

    def _connect(self) -> sqlite3.Connection:
        with _store_errors(self.path):
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            db.execute("PRAGMA synchronous=FULL")
        return db

    @contextmanager
    def writing(self) -> Iterator["_SQLiteWrite"]:
        with self._write_lock, _store_errors(self.path):
            may_grow = self._reserve.hold()
            write = None
            try:
                with _Transaction(self._writer):
                    write = _SQLiteWrite(self._writer, self._head(), may_grow=may_grow)
                    yield write
                    write.ended = True
                    self._end(write)
            except sqlite3.OperationalError as exc:
                # Only a block that ran to its end and only deleted is done again (the caller's
                # block cannot be): its commit found the disk full, and now has the reserve's room.
                if not (_is_full(exc) and write is not None and write.ended and write.only_deletes):
                    raise
                if not self._reserve.release():
                    raise
                logger.warning("the disk of %s is full: its reserve is given up to a delete", self.path)
                with _Transaction(self._writer):
                    write.redo(self._head())
                    self._end(write)
                # Copy the log into the database, so that the next writes reuse the log's room. The
                # delete is committed: a checkpoint that cannot be made now is made later.
                with suppress(sqlite3.Error):
                    self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                if not may_grow:
                    self._writer.execute(f"PRAGMA max_page_count = {self._max_pages}")

    def _head(self) -> int:
        return int(self._writer.execute("SELECT position FROM log_head").fetchone()[0])

    def _end(self, write: "_SQLiteWrite") -> None:
        if write.position != write.head:
            self._writer.execute("UPDATE log_head SET position = ?", (write.position,))

    def head(self) -> int:
        return int(self._read("SELECT position FROM log_head")[0][0])

    def changes(self, after: int, upto: int) -> Changes:
        added = self._read(
            f"SELECT {HASH_COLUMNS} FROM images WHERE key > ? AND key <= ? ORDER BY key", (after, upto)
        )
        removed = self._read("SELECT key FROM tombstones WHERE position > ? AND position <= ?", (after, upto))
        hashes = StoredHashes.of(added, self._cuts(after, upto))
        return Changes(hashes, np.array([row[0] for row in removed], dtype=np.int64))

    def iter_hashes(self, batch_size: int, *, upto: int) -> Iterator[StoredHashes]:
        last_key = 0
        while True:
            rows = self._read(
                f"SELECT {HASH_COLUMNS} FROM images WHERE key > ? AND key <= ? ORDER BY key LIMIT ?",
                (last_key, upto, batch_size),
            )
            if not rows:
                return
            yield StoredHashes.of(rows, self._cuts(last_key, int(rows[-1][0])))
            last_key = int(rows[-1][0])

    def _cuts(self, after: int, upto: int) -> list[tuple[int, bytes]]:
        # Read apart from the other hashes: a row deleted in between leaves a tombstone, which
        # removes its cuts from the index with it.
        return self._read(
            f"SELECT {CUT_COLUMNS} FROM images WHERE key > ? AND key <= ? AND cuts IS NOT NULL ORDER BY key",
            (after, upto),
        )

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

    def size_bytes(self) -> int:
        """The database file and its write-ahead log (which the last process to close removes)."""
        total = 0
        for path in (self.path, self.path.with_name(f"{self.path.name}-wal")):
            with suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def count_older(self, hashing_version: int) -> int:
        return int(
            self._read("SELECT count(*) FROM images WHERE hashing_version < ?", (hashing_version,))[0][0]
        )

    def older(self, hashing_version: int, *, after_key: int, limit: int) -> list[ImageRecord]:
        rows = self._read(
            f"SELECT {COLUMNS} FROM images WHERE hashing_version < ? AND key > ? ORDER BY key LIMIT ?",
            (hashing_version, after_key, limit),
        )
        return [_record(row) for row in rows]

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
        with _store_errors(self.path), self._reader() as reader:
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

    def __init__(self, db: sqlite3.Connection, head: int, *, may_grow: bool) -> None:
        self._db = db
        self._may_grow = may_grow  # False: the reserve is given up, additions fit in the file as it is
        self.head = head
        self.position = head
        self.ended = False  # the block ran to its end: what is left is the commit
        self._deleted: list[str] | None = []  # the ids deleted, while nothing is added

    @property
    def only_deletes(self) -> bool:
        return self._deleted is not None

    def redo(self, head: int) -> None:
        """Make this block's deletes again, in a new transaction whose log starts at `head`."""
        assert self._deleted is not None
        deleted, self._deleted = self._deleted, []
        self.head = self.position = head
        for image_id in deleted:
            self.delete(image_id)

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
        if self._deleted is not None:
            self._deleted.append(image_id)
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
        self._deleted = None
        if not self._may_grow:
            (pages,) = self._db.execute("PRAGMA page_count").fetchone()
            self._db.execute(f"PRAGMA max_page_count = {pages}")
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
            self._roll_back()
            return
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error:
            # A failed COMMIT (disk full, I/O error) can leave the transaction open; every later
            # BEGIN would then fail. Roll back so that only this write is lost, and say so.
            self._roll_back()
            raise

    def _roll_back(self) -> None:
        # SQLite may have rolled back by itself (it does on a full disk); a ROLLBACK that fails must
        # not hide the error that caused it, which is the one to report.
        if self._db.in_transaction:
            with suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")


class _Reserve:
    """RESERVE_BYTES held on the store's disk in a file of their own, given up when a delete finds
    the disk full. Every process on the store shares the one file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def hold(self) -> bool:
        """Make the file if it is missing and the disk has room for it; whether it is there."""
        if self.path.exists():
            return True
        # Made under a name of this process's and then renamed: a half-made file is never taken
        # for the reserve.
        making = self.path.with_name(f"{self.path.name}.{os.getpid()}")
        try:
            descriptor = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(descriptor, 0, RESERVE_BYTES)
            finally:
                os.close(descriptor)
            os.replace(making, self.path)
        except OSError:
            making.unlink(missing_ok=True)
            return False
        return True

    def release(self) -> bool:
        """Give the room back to the disk; whether there was any to give."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True


@contextmanager
def _store_errors(path: Path) -> Iterator[None]:
    """A file locked by another process for longer than the busy timeout is a 503, a full disk (or
    database) a 507, not a 500."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if _busy(exc):
            raise StoreUnavailable(f"the database {path} is locked by another writer: {exc}") from exc
        if _is_full(exc):
            logger.error("the store %s is full: %s", path, exc)
            raise StoreFull(
                f"the store is full: the database {path} has no room left ({exc}); nothing was "
                "stored. Delete images or free space on its disk."
            ) from exc
        raise


def _is_full(exc: sqlite3.Error) -> bool:
    return exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL


def _busy(exc: sqlite3.DatabaseError) -> bool:
    """Whether the error is another process holding the file's lock past the busy timeout."""
    return "locked" in str(exc) or "busy" in str(exc)


def _truncated(path: Path) -> bool:
    """Whether the file is shorter than the size its header records (a cut copy, a partial
    restore). A check of every page (PRAGMA quick_check) would read the whole file at every start:
    seconds at 10M images. With a write-ahead log beside it, the file may rightly be shorter: a
    checkpoint cut short (by a full disk, a crash) leaves pages in the log, where SQLite reads them."""
    wal = path.with_name(f"{path.name}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        return False
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


def _record(row: tuple[Any, ...]) -> ImageRecord:
    metadata = row[-1]
    return record_of_row(row, json.loads(metadata) if metadata else {})


def _metadata_text(metadata: Metadata) -> str | None:
    return json.dumps(metadata, separators=(",", ":")) if metadata else None
