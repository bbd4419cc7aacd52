"""PostgreSQL store: one database that several replicas share. Writers take the log head's row lock,
readers read committed data beside them, and LISTEN/NOTIFY wakes the other replicas."""

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Json
from psycopg_pool import ConnectionPool

from app.errors import ImageExists, StoreFull, StoreUnavailable
from app.models import ImageRecord, NewImage
from app.store.base import Changes, StoredHashes, Wake, cuts_table, refuse_repeated_ids
from app.store.columns import COLUMNS, now_micros, record_of_new, record_of_row, row_of
from app.store.migrations import failed, pending

_Connection = psycopg.Connection[TupleRow]

_COPY_IN = f"COPY images ({COLUMNS}) FROM STDIN"
# Keys and dHashes of a stretch of keys as two big-endian int8 arrays, one row for the whole batch:
# about 2.5 times the rows per second of fetching one row per image.
_KEYS_AND_HASHES = (
    "SELECT string_agg(int8send(key), ''), string_agg(int8send(dhash), ''), "
    "string_agg(int8send(key), '') FILTER (WHERE centre_dhash IS NOT NULL), "
    "string_agg(int8send(centre_dhash), ''), "
    "string_agg(int8send(key), '') FILTER (WHERE dct_hash IS NOT NULL), "
    "string_agg(int8send(dct_hash), ''), "
    "string_agg(int8send(key), '') FILTER (WHERE cuts IS NOT NULL), "
    "string_agg(int8send(length(cuts)::int8), ''), string_agg(cuts, '') "
    "FROM (SELECT key, dhash, centre_dhash, dct_hash, cuts FROM images "
    "WHERE key > %s AND key <= %s ORDER BY key LIMIT %s) AS stretch"
)
_CHANNEL = "doppel_log"
_SCHEMA_LOCK = 0x646F7070656C  # "doppel": the advisory lock that serialises the migrations
CONNECT_TIMEOUT_S = 5  # how long a request waits for a connection before it is a 503
LOCK_TIMEOUT_MS = 30_000  # how long a writer waits for another process's write block (as SQLite's)
POOL_SIZE = 10
_RECONNECT_DELAY_S = 0.5
# How often the listening thread looks up from its wait to see whether the store is closing.
_LISTEN_STEP_S = 0.2

logger = logging.getLogger("doppel")


class PostgresImageStore:
    """ImageStore in a PostgreSQL database. The log head's row is the write lock of every process."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._where = _without_password(url)
        # A first connection of its own, to say why the server cannot be reached (the pool does
        # not) and to bring the schema to this code's version.
        with _reaching(self._where), psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            self.migrated_from = _migrate(conn, f"the database at {self._where}")
            self.identity: str = str(_one(conn.execute("SELECT identity FROM log_head"))[0])
        self._pool: ConnectionPool[_Connection] = ConnectionPool(
            url,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S},
            configure=_configure,
            check=ConnectionPool.check_connection,  # a connection broken by a server restart is replaced
            timeout=CONNECT_TIMEOUT_S,
            # Give up a failing reconnection soon: the next request then starts a new one, instead of
            # waiting out a backoff that doubles for minutes after the server is back.
            reconnect_timeout=2 * CONNECT_TIMEOUT_S,
            name="doppel",
            open=True,
        )
        try:
            with _reaching(self._where):
                self._pool.wait(timeout=CONNECT_TIMEOUT_S)
        except StoreUnavailable:
            self._pool.close()
            raise
        # One writer per process at a time: writers queued on the row lock would each hold a pooled
        # connection, and could leave none for the reads made inside the lock holder's block.
        self._write_lock = threading.Lock()
        self._wakes: list[Wake] = []
        self._listener: threading.Thread | None = None
        self._closing = threading.Event()

    @contextmanager
    def writing(self) -> Iterator["_PostgresWrite"]:
        with self._write_lock, self._connection() as conn, conn.transaction():
            (head,) = _one(conn.execute("SELECT position FROM log_head FOR UPDATE"))
            write = _PostgresWrite(conn, int(head))
            yield write
            if write.position != head:
                conn.execute("UPDATE log_head SET position = %s", (write.position,))
                conn.execute("SELECT pg_notify(%s, %s)", (_CHANNEL, str(write.position)))

    def head(self) -> int:
        with self._connection() as conn:
            return int(_one(conn.execute("SELECT position FROM log_head"))[0])

    def changes(self, after: int, upto: int) -> Changes:
        with self._connection() as conn:
            added = _stored_hashes(conn, after, upto, None)
            removed = conn.execute(
                "SELECT key FROM tombstones WHERE position > %s AND position <= %s ORDER BY position",
                (after, upto),
            ).fetchall()
        return Changes(added, np.array([row[0] for row in removed], dtype=np.int64))

    def iter_hashes(self, batch_size: int, *, upto: int) -> Iterator[StoredHashes]:
        # A short query per batch, and no connection held while the caller works on a batch.
        last_key = 0
        while True:
            with self._connection() as conn:
                batch = _stored_hashes(conn, last_key, upto, batch_size)
            if not len(batch.keys):
                return
            yield batch
            last_key = int(batch.keys[-1])

    def get(self, image_id: str) -> ImageRecord | None:
        with self._connection() as conn:
            row = conn.execute(f"SELECT {COLUMNS} FROM images WHERE id = %s", (image_id,)).fetchone()
        return None if row is None else _record(row)

    def get_by_keys(self, keys: list[int]) -> dict[int, ImageRecord]:
        if not keys:
            return {}
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM images WHERE key = ANY(%s::bigint[])", (keys,)
            ).fetchall()
        return {row[0]: _record(row) for row in rows}

    def thumbnail(self, image_id: str) -> bytes | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT data FROM thumbnails WHERE key = (SELECT key FROM images WHERE id = %s)", (image_id,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def page(self, *, limit: int, after: str | None) -> list[ImageRecord]:
        with self._connection() as conn:
            rows = conn.execute(
                f'SELECT {COLUMNS} FROM images WHERE id > %s COLLATE "C" ORDER BY id COLLATE "C" LIMIT %s',
                ("" if after is None else after, limit),
            ).fetchall()
        return [_record(row) for row in rows]

    def count(self) -> int:
        with self._connection() as conn:
            return int(_one(conn.execute("SELECT count(*) FROM images"))[0])

    def size_bytes(self) -> int:
        """The tables with their indexes and TOAST (pg_total_relation_size)."""
        with self._connection() as conn:
            (size,) = _one(
                conn.execute(
                    "SELECT pg_total_relation_size('images') + pg_total_relation_size('log_head')"
                    " + pg_total_relation_size('tombstones')"
                )
            )
        return int(size)

    def count_older(self, hashing_version: int) -> int:
        with self._connection() as conn:
            query = "SELECT count(*) FROM images WHERE hashing_version < %s"
            return int(_one(conn.execute(query, (hashing_version,)))[0])

    def older(self, hashing_version: int, *, after_key: int, limit: int) -> list[ImageRecord]:
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM images WHERE hashing_version < %s AND key > %s ORDER BY key LIMIT %s",
                (hashing_version, after_key, limit),
            ).fetchall()
        return [_record(row) for row in rows]

    def on_change(self, wake: Wake) -> None:
        """LISTEN on a connection of its own, in a thread that wakes on every notification."""
        self._wakes.append(wake)
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="doppel-listen", daemon=True)
            self._listener.start()

    def describe(self) -> str:
        return self._where

    def close(self) -> None:
        self._closing.set()
        if self._listener is not None:
            self._listener.join()
        self._pool.close()

    @contextmanager
    def _connection(self) -> Iterator[_Connection]:
        with _reaching(self._where), self._pool.connection() as conn:
            yield conn

    def _listen(self) -> None:
        """Wake after every commit; after every (re)connection too, as the notifications sent while
        the connection was down are lost. A lost connection is retried until the store closes."""
        while not self._closing.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
                    conn.execute(f"LISTEN {_CHANNEL}")
                    self._wake()
                    while not self._closing.is_set():
                        for _ in conn.notifies(timeout=_LISTEN_STEP_S):
                            self._wake()
            except psycopg.OperationalError:
                self._closing.wait(_RECONNECT_DELAY_S)

    def _wake(self) -> None:
        for wake in list(self._wakes):
            wake()


class _PostgresWrite:
    """WriteTransaction on a pooled connection, inside a transaction that holds the log head's row."""

    def __init__(self, conn: _Connection, head: int) -> None:
        self._conn = conn
        self.head = head
        self.position = head

    def add(self, images: list[NewImage]) -> list[ImageRecord]:
        refuse_repeated_ids(images)
        ids = [image.id for image in images]
        taken = self._taken(ids)
        if taken:
            raise ImageExists(taken)
        try:
            # A savepoint: after a unique violation (a writer that did not take the lock) the
            # transaction can still say which ids were taken.
            with self._conn.transaction():
                return self._insert(images)
        except psycopg.errors.UniqueViolation:
            taken = self._taken(ids)
            if not taken:
                raise
            raise ImageExists(taken) from None

    def replace(self, image: NewImage) -> tuple[ImageRecord, ImageRecord | None]:
        old = self.delete(image.id)
        return self.add([image])[0], old

    def delete(self, image_id: str) -> ImageRecord | None:
        row = self._conn.execute(
            f"DELETE FROM images WHERE id = %s RETURNING {COLUMNS}", (image_id,)
        ).fetchone()
        if row is None:
            return None
        old = _record(row)
        self.position += 1
        self._conn.execute("DELETE FROM thumbnails WHERE key = %s", (old.key,))
        self._conn.execute("INSERT INTO tombstones (position, key) VALUES (%s, %s)", (self.position, old.key))
        return old

    def _taken(self, ids: list[str]) -> list[str]:
        rows = self._conn.execute("SELECT id FROM images WHERE id = ANY(%s::text[])", (ids,)).fetchall()
        taken = {row[0] for row in rows}
        return [i for i in ids if i in taken]

    def _insert(self, images: list[NewImage]) -> list[ImageRecord]:
        created_at = now_micros()
        first_key = self.position + 1
        # COPY: a batch of 10,000 rows in a quarter of executemany's time, and the lock is held meanwhile.
        with self._conn.cursor() as cursor, cursor.copy(_COPY_IN) as copy:
            for n, image in enumerate(images):
                copy.write_row(
                    row_of(first_key + n, image, created_at, Json(image.metadata) if image.metadata else None)
                )
        thumbnails = [(first_key + n, image.thumbnail) for n, image in enumerate(images) if image.thumbnail]
        if thumbnails:
            with self._conn.cursor() as cursor:
                cursor.executemany("INSERT INTO thumbnails (key, data) VALUES (%s, %s)", thumbnails)
        self.position += len(images)
        return [record_of_new(first_key + n, image, created_at) for n, image in enumerate(images)]


@contextmanager
def _reaching(where: str) -> Iterator[None]:
    """The server away, a connection lost mid-query, no pooled connection in time (PoolTimeout is an
    OperationalError): a 503 the client may retry. A full disk (SQLSTATE 53100): a 507. What failed
    was not committed."""
    try:
        yield
    except psycopg.errors.DiskFull as exc:
        logger.error("the store %s is full: %s", where, _reason(exc))
        raise StoreFull(
            f"the store is full: the database at {where} has no room left ({_reason(exc)}); nothing "
            "was stored. Delete images or free space on the database server's disk."
        ) from exc
    except psycopg.errors.LockNotAvailable as exc:
        raise StoreUnavailable(
            f"the database at {where} is locked by another writer: {_reason(exc)}"
        ) from exc
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"the database at {where} cannot be reached: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    """The first line of psycopg's message (the rest is hints such as 'Is the server running...')."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _migrate(conn: _Connection, database: str) -> int | None:
    """Bring the schema to this code's version; return the version it was at, or None if it was
    there. Replicas starting at once take turns on an advisory lock: the first migrates, the others
    find it done. A store at this version is only read."""
    with conn.transaction():
        version = _recorded_version(conn)
        if version is not None and not pending(version, database):
            return None
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS doppel_schema ("
            "singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton), version INTEGER NOT NULL)"
        )
        version = _recorded_version(conn)
        if version is None:  # new, or made before the version was recorded: those had schema 1's tables
            version = 0 if _one(conn.execute("SELECT to_regclass('log_head')"))[0] is None else 1
        migrations = pending(version, database)  # raising rolls back: a newer store is left as it was
        if not migrations:
            return None
        try:
            for migration in migrations:
                for statement in migration.postgres:
                    conn.execute(statement)
        except psycopg.OperationalError:
            raise
        except psycopg.DatabaseError as exc:
            raise failed(database, version, _reason(exc)) from exc
        conn.execute(
            "INSERT INTO doppel_schema (version) VALUES (%s) "
            "ON CONFLICT (singleton) DO UPDATE SET version = excluded.version",
            (version + len(migrations),),
        )
        return version


def _recorded_version(conn: _Connection) -> int | None:
    if _one(conn.execute("SELECT to_regclass('doppel_schema')"))[0] is None:
        return None
    row = conn.execute("SELECT version FROM doppel_schema").fetchone()
    return None if row is None else int(row[0])


def _configure(conn: _Connection) -> None:
    """A writer waiting longer than LOCK_TIMEOUT_MS for another's block gets a 503, as with SQLite."""
    conn.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")


def _stored_hashes(conn: _Connection, after: int, upto: int, limit: int | None) -> StoredHashes:
    """The images of keys in (after, upto], `limit` at most, in key order."""
    packed = _one(conn.execute(_KEYS_AND_HASHES, (after, upto, limit)))
    keys, hashes = _sorted_by_key(packed[0], packed[1])
    centre_keys, centre_hashes = _sorted_by_key(packed[2], packed[3])
    dct_keys, dct_hashes = _sorted_by_key(packed[4], packed[5])
    # The aggregates of one row read the stretch's rows in the same order: each cut's key, size
    # and hashes line up.
    cut_keys, cut_sizes = (np.frombuffer(p or b"", dtype=">i8").astype(np.int64) for p in packed[6:8])
    cuts = cuts_table(cut_keys, cut_sizes, packed[8] or b"")
    return StoredHashes(keys, hashes, centre_keys, centre_hashes, dct_keys, dct_hashes, *cuts)


def _sorted_by_key(packed_keys: bytes | None, packed_hashes: bytes | None) -> tuple[np.ndarray, np.ndarray]:
    """Keys (int64) and hashes (uint64) packed as big-endian int8 arrays, in key order."""
    if packed_keys is None or packed_hashes is None:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64)
    keys = np.frombuffer(packed_keys, dtype=">i8").astype(np.int64)
    hashes = np.frombuffer(packed_hashes, dtype=">i8").astype(np.int64).view(np.uint64)
    # string_agg keeps the order of the sorted stretch in practice, but SQL does not promise it.
    order = np.argsort(keys, kind="stable")
    return keys[order], hashes[order]


def _one(cursor: psycopg.Cursor[TupleRow]) -> tuple[Any, ...]:
    row = cursor.fetchone()
    assert row is not None, "the query returns one row"
    return row


def _without_password(url: str) -> str:
    """The URL for messages and the log: without the password of its user part or query."""
    parts = urlsplit(url)
    user, at, host = parts.netloc.rpartition("@")
    netloc = f"{user.partition(':')[0]}{at}{host}"
    query = "&".join(p for p in parts.query.split("&") if not p.startswith("password="))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _record(row: tuple[Any, ...]) -> ImageRecord:
    metadata = row[-1]
    return record_of_row(row, metadata if metadata is not None else {})
