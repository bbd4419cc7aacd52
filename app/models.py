"""Domain records shared by the service, the store and the API. Plain frozen dataclasses."""

from dataclasses import dataclass, field
from typing import Any

Metadata = dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewImage:
    """What the service asks the store to keep; the store assigns the internal key and the time."""

    id: str
    dhash: int
    width: int | None  # None when only the dHash was given (hash-only batch): the size is unknown
    height: int | None
    metadata: Metadata = field(default_factory=dict)
    dhash_vertical: int | None = None  # None when only the dHash was given (hash-only batch)
    sha256: str | None = None  # hex digest of the uploaded file's bytes


@dataclass(frozen=True, slots=True)
class ImageRecord:
    """A stored image. `key` is the internal integer id: it only grows and is the faiss id."""

    key: int
    id: str
    dhash: int
    width: int | None
    height: int | None
    created_at: str
    metadata: Metadata
    dhash_vertical: int | None = None
    sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """A stored image whose dHash is within the asked distance of the query's."""

    record: ImageRecord
    distance: int

    @property
    def similarity(self) -> float:
        return 1 - self.distance / 64


@dataclass(frozen=True, slots=True)
class Page:
    """One page of records in key order, and the cursor for the next page (None at the end)."""

    items: list[ImageRecord]
    next: str | None


@dataclass(frozen=True, slots=True)
class HashItem:
    """One image of a hash-only batch, as the client sent it (validated by the service)."""

    hash: str  # the dHash as 16 hex digits
    id: str | None = None  # generated when None
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FileItem:
    """One file of a batch upload, as the client sent it (validated by the service)."""

    data: bytes
    id: str | None = None  # generated when None
    metadata: str | None = None  # JSON object text, as in a form field
