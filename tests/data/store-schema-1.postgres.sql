-- The PostgreSQL tables of Doppel's schema 1, as app/store/postgres.py made them before the schema's
-- version was recorded (tests/test_migrations.py fills them with the rows of store-schema-1.sqlite3).
CREATE TABLE images (
    key BIGINT PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    dhash BIGINT NOT NULL,
    dhash_vertical BIGINT,
    dct_hash BIGINT,
    sha256 BYTEA,
    width INTEGER,
    height INTEGER,
    created_at BIGINT NOT NULL,
    metadata JSON
);
CREATE TABLE log_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    position BIGINT NOT NULL,
    identity TEXT NOT NULL
);
CREATE TABLE tombstones (position BIGINT PRIMARY KEY, key BIGINT NOT NULL);
