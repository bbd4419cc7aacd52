"""The schema's versions: MIGRATIONS[n - 1] takes a store from version n - 1 to n, in SQLite's and in
PostgreSQL's SQL. A store records its version (SQLite: PRAGMA user_version; PostgreSQL: the
doppel_schema table) and is brought forward at start, in one transaction; a store of a version
this code does not know is refused. A new version is one entry at the end of MIGRATIONS.
"""

from dataclasses import dataclass

from app.store.base import StoreUnusable


@dataclass(frozen=True, slots=True)
class Migration:
    """The statements that take a store to this migration's version, run in order in one transaction."""

    sqlite: tuple[str, ...]
    postgres: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    # 1: the images, the change log's head (with the store's random identity) and its tombstones.
    # IF NOT EXISTS: SQLite files of Doppel from before the version was recorded hold some of them.
    Migration(
        sqlite=(
            """
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
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS log_head (
                singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
                position INTEGER NOT NULL,
                identity TEXT NOT NULL
            )
            """,
            "CREATE TABLE IF NOT EXISTS tombstones (position INTEGER PRIMARY KEY, key INTEGER NOT NULL)",
            # A store written before the log existed: its head is the largest key ever used.
            "INSERT OR IGNORE INTO log_head VALUES (0, coalesce("
            "(SELECT seq FROM sqlite_sequence WHERE name = 'images'), 0), lower(hex(randomblob(16))))",
        ),
        postgres=(
            """
            CREATE TABLE IF NOT EXISTS images (
                key BIGINT PRIMARY KEY,                -- the log position that added it
                id TEXT COLLATE "C" NOT NULL UNIQUE,   -- "C": bytewise order as in SQLite
                dhash BIGINT NOT NULL,                 -- 64-bit hashes stored as signed integers
                dhash_vertical BIGINT,
                dct_hash BIGINT,
                sha256 BYTEA,
                width INTEGER,
                height INTEGER,
                created_at BIGINT NOT NULL,            -- microseconds since the Unix epoch, UTC
                metadata JSON                          -- NULL when empty; JSON, not JSONB: kept as written
            )
            """,
            """
            CREATE TABLE IF NOT EXISTS log_head (
                singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
                position BIGINT NOT NULL,
                identity TEXT NOT NULL
            )
            """,
            "CREATE TABLE IF NOT EXISTS tombstones (position BIGINT PRIMARY KEY, key BIGINT NOT NULL)",
            "INSERT INTO log_head (position, identity) "
            "VALUES (0, replace(gen_random_uuid()::text, '-', '')) ON CONFLICT DO NOTHING",
        ),
    ),
    # 2: the version of Doppel's hashing each record's hashes come from (app/imaging HASHING_VERSION).
    # The records stored before were all hashed, or given, as version 1. A column with a constant
    # default is added without rewriting the table, in SQLite and PostgreSQL alike. The index lets
    # the start count the records on an older version without reading the whole table.
    Migration(
        sqlite=(
            "ALTER TABLE images ADD COLUMN hashing_version INTEGER NOT NULL DEFAULT 1",
            "CREATE INDEX images_hashing_version ON images (hashing_version)",
        ),
        postgres=(
            "ALTER TABLE images ADD COLUMN hashing_version INTEGER NOT NULL DEFAULT 1",
            "CREATE INDEX images_hashing_version ON images (hashing_version)",
        ),
    ),
    # 3: a small WebP of each uploaded image, for the page at / (GET /images/{id}/thumbnail); its
    # key is the image's, and it is deleted with the image.
    Migration(
        sqlite=("CREATE TABLE thumbnails (key INTEGER PRIMARY KEY, data BLOB NOT NULL)",),
        postgres=("CREATE TABLE thumbnails (key BIGINT PRIMARY KEY, data BYTEA NOT NULL)",),
    ),
    # 4: the hashes of each picture's centre (app/imaging CENTRE), NULL where not known (records
    # hashed before, hash-only records). Nullable columns are added without rewriting the table.
    Migration(
        sqlite=tuple(
            f"ALTER TABLE images ADD COLUMN {column} INTEGER"
            for column in ("centre_dhash", "centre_vertical", "centre_dct")
        ),
        postgres=tuple(
            f"ALTER TABLE images ADD COLUMN {column} BIGINT"
            for column in ("centre_dhash", "centre_vertical", "centre_dct")
        ),
    ),
    # 5: the hashes of each picture's other cuts (app/imaging ImageHashes' alternatives), packed
    # (app/store/columns.py), NULL where it has none or they are not known (records hashed before).
    Migration(
        sqlite=("ALTER TABLE images ADD COLUMN cuts BLOB",),
        postgres=("ALTER TABLE images ADD COLUMN cuts BYTEA",),
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def pending(found: int, database: str) -> list[Migration]:
    """The migrations a store at version `found` needs, in order (the last makes it
    len(MIGRATIONS)). Raises StoreUnusable for a store written by a newer Doppel; `database` names
    it in the message ("the database /srv/doppel.sqlite3")."""
    if found > len(MIGRATIONS):
        raise StoreUnusable(
            f"{database} was written by a newer Doppel (schema {found}; this one knows up to "
            f"{len(MIGRATIONS)}): run that Doppel, or restore a backup made before it ran"
        )
    return list(MIGRATIONS[found:])


def failed(database: str, found: int, reason: str) -> StoreUnusable:
    """The error for a migration that failed (and was rolled back: the store is as it was)."""
    return StoreUnusable(
        f"{database} could not be migrated from schema {found} to {len(MIGRATIONS)}, and was left "
        f"as it was: {reason}"
    )
