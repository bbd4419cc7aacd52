"""The one place that reads configuration: environment variables prefixed DOPPEL_."""

import os
import re
import resource
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024
GIB = 1024 * MIB
_HEADER_TOKEN = re.compile(r"[\x21-\x7e]+")
# Open files kept for other than connections: the store, its pool, snapshots, the log, libraries.
FILES_NOT_FOR_CONNECTIONS = 128


def connections_the_file_limit_allows() -> int:
    """Half the process's open-file limit beyond FILES_NOT_FOR_CONNECTIONS: a connection can hold
    two (its socket and an upload spooled to a temporary file)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, (soft - FILES_NOT_FOR_CONNECTIONS) // 2)


class Settings(BaseSettings):
    """Doppel's settings; every field can be set as DOPPEL_<NAME> in the environment."""

    # hide_input_in_errors: an invalid DOPPEL_API_KEY must not be printed with the error.
    model_config = SettingsConfigDict(
        env_prefix="DOPPEL_", env_ignore_empty=True, extra="ignore", hide_input_in_errors=True
    )

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on.")
    data_dir: Path = Field(
        Path("./data"), description="Folder of the SQLite store (by default) and of the index snapshots."
    )
    database_url: str | None = Field(
        None,
        description="The store: sqlite:///PATH (default: doppel.sqlite3 in the data folder) or "
        "postgresql://USER@HOST:PORT/DB, which several replicas can share.",
    )
    max_lag_ms: int = Field(
        1000, ge=1, description="/health/ready answers 503 while the index lags the store by more than this."
    )
    sync_interval_ms: int = Field(
        100, ge=1, description="How often the index looks for changes made by other processes."
    )
    snapshot_interval_s: int = Field(
        300,
        ge=0,
        description="How often (when it changed) the index is saved to the data folder, so that a "
        "restart loads it and reads only the changes since; 0: only at shutdown.",
    )
    max_distance: int = Field(
        10,
        ge=0,
        le=64,
        description="Default distance (bits) at or under which a stored image is a candidate: of the dHash, "
        "or with the score of the DCT hash or of the centre's dHash.",
    )
    max_score: float = Field(
        10.0,
        ge=0,
        le=64,
        description="A candidate matches when its score, the mean of its dHash, vertical dHash and DCT "
        "hash distances (bits), is at most this (docs/accuracy.md).",
    )
    thumbnails: bool = Field(
        True, description="Keep a small WebP thumbnail (160 px) of each uploaded image, for the page at /."
    )
    duplicate_groups: bool = Field(
        True,
        description="Keep the pairs of duplicates among the stored images in memory (built in the "
        "background at start), so GET /duplicates reads them; false: it computes them on demand, "
        "for stores of up to 10,000 images.",
    )
    max_upload_bytes: int = Field(25 * MIB, ge=1, description="Largest accepted image file, in bytes.")
    max_batch_bytes: int = Field(
        256 * MIB, ge=1, description="Largest accepted POST /images/batch body (all files or JSON), in bytes."
    )
    max_pixels: int = Field(
        100_000_000, ge=1, description="Largest accepted image, in pixels (width x height)."
    )
    max_concurrent_decodes: int = Field(
        default_factory=lambda: 2 * (os.cpu_count() or 1),
        ge=1,
        description="Images decoded at once (default: twice the cores); more wait their turn.",
    )
    max_decode_memory: int = Field(
        2 * GIB,
        ge=1,
        description="Bytes that the images being decoded may take in all; each reserves its cost "
        "(1-33 bytes a pixel, by format, from its header) and waits its turn, and one that could "
        "never fit is refused (413).",
    )
    keep_alive_s: int = Field(
        5,
        ge=1,
        description="Seconds a connection may stay idle, new or between requests, before it is closed.",
    )
    header_timeout_s: float = Field(
        10,
        gt=0,
        description="Seconds a request's head (request line and headers) may take to arrive, from "
        "the connection's start or the previous response; then 408 and closed.",
    )
    body_min_rate: int = Field(
        1000,
        ge=1,
        description="Bytes a second a request body must come at, once DOPPEL_BODY_TIMEOUT_S of "
        "waiting for it has been allowed; else 408 and closed.",
    )
    body_timeout_s: float = Field(
        10, gt=0, description="Seconds of waiting for a request body allowed beyond what its bytes earn."
    )
    max_connections: int = Field(
        default_factory=connections_the_file_limit_allows,
        ge=1,
        description="Open connections at most; more are answered 503 and closed at once "
        "(default: half the open-file limit, less 64).",
    )
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = Field(
        "info", description="Log level: critical, error, warning, info, debug, trace."
    )
    api_key: SecretStr | None = Field(
        None,
        min_length=16,
        description="When set, every endpoint but /health, /health/live, /health/ready, the page at / and "
        "the API docs needs `Authorization: Bearer KEY` or `X-API-Key: KEY`. Set it whenever the port is "
        "reachable beyond localhost.",
    )

    metrics_public: bool = Field(
        False, description="When true, GET /metrics needs no API key (for a scraper on a trusted network)."
    )

    @field_validator("api_key")
    @classmethod
    def _key_fits_in_a_header(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not _HEADER_TOKEN.fullmatch(key.get_secret_value()):
            raise ValueError("the API key must be printable ASCII without spaces (it is sent in a header)")
        return key

    @field_validator("database_url")
    @classmethod
    def _known_scheme(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("the database URL must start with sqlite:/// or postgresql://")
        return url

    @property
    def database_path(self) -> Path | None:
        """The SQLite file, or None when the store is PostgreSQL."""
        if self.database_url is None:
            return self.data_dir / "doppel.sqlite3"
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))
        return None
