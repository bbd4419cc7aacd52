"""How the SQL stores put a record in columns and read it back: 64-bit hashes as signed 64-bit
integers, times as microseconds since the Unix epoch (UTC), the SHA-256 as bytes, a picture's
other cuts as their hashes packed in bytes (`pack_cuts`)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from app.models import Cut, ImageRecord, Metadata, NewImage
from app.store.base import format_time

# metadata last: each store decodes it in its own way
COLUMNS = (
    "key, id, dhash, dhash_vertical, dct_hash, centre_dhash, centre_vertical, centre_dct, cuts, sha256, "
    "width, height, created_at, hashing_version, metadata"
)
_I64 = 1 << 63
_U64 = 1 << 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def row_of(key: int, image: NewImage, created_at: int, metadata: object) -> tuple[Any, ...]:
    """The values of COLUMNS for `image` stored under `key`, committed at `created_at` (unless it
    keeps its own); `metadata` as the store writes it."""
    return (
        key,
        image.id,
        signed(image.dhash),
        None if image.dhash_vertical is None else signed(image.dhash_vertical),
        None if image.dct_hash is None else signed(image.dct_hash),
        *(None if value is None else signed(value) for value in _centre(image)),
        pack_cuts(image.cuts),
        bytes.fromhex(image.sha256) if image.sha256 else None,
        image.width,
        image.height,
        _created(image, created_at),
        image.hashing_version,
        metadata,
    )


def record_of_new(key: int, image: NewImage, created_at: int) -> ImageRecord:
    """The record `image` becomes once stored under `key` at `created_at`."""
    return ImageRecord(
        key=key,
        id=image.id,
        dhash=image.dhash,
        width=image.width,
        height=image.height,
        created_at=format_micros(_created(image, created_at)),
        metadata=dict(image.metadata),
        dhash_vertical=image.dhash_vertical,
        dct_hash=image.dct_hash,
        centre_dhash=image.centre_dhash,
        centre_vertical=image.centre_vertical,
        centre_dct=image.centre_dct,
        cuts=image.cuts,
        sha256=image.sha256,
        hashing_version=image.hashing_version,
    )


def record_of_row(row: tuple[Any, ...], metadata: Metadata) -> ImageRecord:
    """The record in a row of COLUMNS; `metadata` is its last column, decoded by the store."""
    key, image_id, dhash, vertical, dct_hash, *centre, cuts, sha256, width, height, created, version, _ = row
    centre_dhash, centre_vertical, centre_dct = (None if value is None else value % _U64 for value in centre)
    return ImageRecord(
        key=key,
        id=image_id,
        dhash=dhash % _U64,
        width=width,
        height=height,
        created_at=format_micros(created),
        metadata=metadata,
        dhash_vertical=None if vertical is None else vertical % _U64,
        dct_hash=None if dct_hash is None else dct_hash % _U64,
        centre_dhash=centre_dhash,
        centre_vertical=centre_vertical,
        centre_dct=centre_dct,
        cuts=unpack_cuts(cuts),
        sha256=bytes(sha256).hex() if sha256 else None,
        hashing_version=version,
    )


def now_micros() -> int:
    return (datetime.now(UTC) - _EPOCH) // timedelta(microseconds=1)


def format_micros(micros: int) -> str:
    return format_time(_EPOCH + timedelta(microseconds=micros))


def _created(image: NewImage, committed_at: int) -> int:
    if image.created_at is None:
        return committed_at
    return (datetime.fromisoformat(image.created_at) - _EPOCH) // timedelta(microseconds=1)


def signed(value: int) -> int:
    return value - _U64 if value >= _I64 else value


def _centre(image: NewImage) -> tuple[int | None, int | None, int | None]:
    return image.centre_dhash, image.centre_vertical, image.centre_dct


def pack_cuts(cuts: tuple[Cut, ...]) -> bytes | None:
    """Cuts as 24 bytes each (their three hashes as big-endian 64-bit words); None for none."""
    return np.array(cuts, dtype=">u8").tobytes() if cuts else None


def unpack_cuts(packed: bytes | None) -> tuple[Cut, ...]:
    """The cuts `pack_cuts` packed."""
    if not packed:
        return ()
    words = np.frombuffer(packed, dtype=">u8").reshape(-1, 3).tolist()
    return tuple((dhash, vertical, dct) for dhash, vertical, dct in words)
