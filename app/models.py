"""Domain records shared by the service, the store and the API. Plain frozen dataclasses."""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Metadata = dict[str, Any]
# The dHash, vertical dHash and DCT hash of one other cut of a picture (app/imaging ImageHashes'
# alternatives: its padding or an app's bars off), kept where its box differs from the whole's.
Cut = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class NewImage:
    """What the service asks the store to keep; the store assigns the internal key and, unless it is
    given, the time."""

    id: str
    dhash: int
    width: int | None  # None when only the dHash was given (hash-only batch): the size is unknown
    height: int | None
    metadata: Metadata = field(default_factory=dict)
    # None when not known (an item of a hash-only batch that did not give it)
    dhash_vertical: int | None = None  # orientation variants of a stored image need it
    dct_hash: int | None = None  # confirms dHash candidates
    # The hashes of the picture's centre (app/imaging CENTRE): all three, or none when not known
    centre_dhash: int | None = None
    centre_vertical: int | None = None
    centre_dct: int | None = None
    cuts: tuple[Cut, ...] = ()
    sha256: str | None = None  # hex digest of the uploaded file's bytes
    # The version of Doppel's hashing (app/imaging HASHING_VERSION) the hashes come from, or are
    # comparable with (a hash-only batch)
    hashing_version: int = field(kw_only=True)
    created_at: str | None = None  # None: when it is committed; a re-hashed record keeps its own
    thumbnail: bytes | None = None  # a small WebP for the page at /; kept beside the record


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
    dct_hash: int | None = None
    centre_dhash: int | None = None
    centre_vertical: int | None = None
    centre_dct: int | None = None
    cuts: tuple[Cut, ...] = ()
    sha256: str | None = None
    hashing_version: int = field(kw_only=True)


class Orientation(StrEnum):
    """How a query image is turned relative to the stored image it matches."""

    ORIGINAL = "original"
    FLIP_HORIZONTAL = "flip_horizontal"  # mirrored left to right
    FLIP_VERTICAL = "flip_vertical"  # mirrored top to bottom
    ROTATE_90 = "rotate_90"  # turned 90 degrees clockwise
    ROTATE_180 = "rotate_180"
    ROTATE_270 = "rotate_270"  # turned 90 degrees counter-clockwise
    TRANSPOSE = "transpose"  # mirrored across the top-left to bottom-right diagonal
    TRANSVERSE = "transverse"  # mirrored across the other diagonal


@dataclass(frozen=True, slots=True)
class Match:
    """A stored image whose dHash is within the asked distance of the query's.

    `distance`, `vertical_distance` and `dct_distance` are the distances between the dHashes,
    the vertical dHashes and the DCT hashes (None where either side lacks that hash); `score`
    weighs them into one distance in bits (app/service/matching.py). `exact` says the uploaded
    bytes are identical (same SHA-256).
    """

    record: ImageRecord
    distance: int
    score: float
    vertical_distance: int | None = None
    dct_distance: int | None = None
    orientation: Orientation = Orientation.ORIGINAL
    exact: bool = False

    @property
    def similarity(self) -> float:
        return 1 - self.score / 64


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
    vertical_hash: str | None = None
    dct_hash: str | None = None
    centre: tuple[str, str, str] | None = None  # the centre's three hashes, as `hash`
    cuts: tuple[tuple[str, str, str], ...] = ()  # each other cut's three hashes
    hashing_version: int | None = None  # None: the current one


@dataclass(frozen=True, slots=True)
class FileItem:
    """One file of a batch upload, as the client sent it (validated by the service)."""

    data: bytes
    id: str | None = None  # generated when None
    metadata: str | None = None  # JSON object text, as in a form field
