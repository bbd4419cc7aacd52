"""Request and response shapes of the HTTP API."""

from typing import Any

from pydantic import BaseModel, Field

from app.imaging import HASHING_VERSION, MAX_CUTS, Signature, hash_hex
from app.models import ImageRecord, Match, Orientation, Page
from app.service.duplicates import GroupsPage
from app.service.ingest import Added
from app.service.pairs import Pair

FLAT = (
    "The uploaded picture is one flat tone at the scale of its hashes (a blank page, a plain texture): "
    "its unedited, resized and lightly re-encoded copies are found, but many edits (a caption, a blur, "
    "a strong re-encode) redraw its hashes, so an empty `matches` says little."
)


class PartHashes(BaseModel):
    """The three hashes of a part of a picture, each as 16 hex digits."""

    hash: str = Field(description="dHash.")
    vertical_hash: str = Field(description="Vertical dHash.")
    dct_hash: str = Field(description="DCT hash.")

    @classmethod
    def of(cls, dhash: int, vertical: int, dct: int) -> "PartHashes":
        return cls(hash=hash_hex(dhash), vertical_hash=hash_hex(vertical), dct_hash=hash_hex(dct))

    def texts(self) -> tuple[str, str, str]:
        return self.hash, self.vertical_hash, self.dct_hash


class ImageOut(BaseModel):
    id: str = Field(description="The client's id for the image.")
    hash: str = Field(
        description="dHash as 16 hex digits, in the form of `str(imagehash.dhash(img))`: within 3 bits "
        "of it, identical for most images."
    )
    vertical_hash: str | None = Field(
        description="Vertical dHash, in the form of `str(imagehash.dhash_vertical(img))`; "
        "null for hash-only records."
    )
    dct_hash: str | None = Field(
        description="DCT hash: signs of the 8x8 lowest DCT frequencies of the 32x32 grey image; "
        "null for hash-only records."
    )
    width: int | None = Field(description="Pixels, as displayed; null for an image added by its hash alone.")
    height: int | None = Field(description="Pixels, as displayed; null for an image added by its hash alone.")
    created_at: str = Field(description="When the record was committed, ISO 8601 UTC.")
    centre: PartHashes | None = Field(
        description="The hashes of the picture's centre (its middle 80% each way), by which cropped "
        "and captioned copies are found; null for hash-only records given none."
    )
    cuts: list[PartHashes] = Field(
        description="The hashes of the picture cut out otherwise (without padding the colour of its "
        "edge; without a screenshot's bars; with its border trimmed past a caption or logo in a "
        f"corner), where that differs from the border trim: 0-{MAX_CUTS}."
    )
    hashing_version: int = Field(
        description=f"The version of Doppel's hashing its hashes come from (this one's: {HASHING_VERSION})."
    )
    metadata: dict[str, Any]

    @classmethod
    def of(cls, record: ImageRecord) -> "ImageOut":
        return cls(
            id=record.id,
            hash=hash_hex(record.dhash),
            vertical_hash=_hex_or_none(record.dhash_vertical),
            dct_hash=_hex_or_none(record.dct_hash),
            width=record.width,
            height=record.height,
            created_at=record.created_at,
            centre=(
                None
                if record.centre_dhash is None or record.centre_vertical is None or record.centre_dct is None
                else PartHashes.of(record.centre_dhash, record.centre_vertical, record.centre_dct)
            ),
            cuts=[PartHashes.of(*cut) for cut in record.cuts],
            hashing_version=record.hashing_version,
            metadata=record.metadata,
        )


class MatchOut(BaseModel):
    id: str
    distance: int = Field(description="Hamming distance between the dHashes, 0-64 bits.")
    similarity: float = Field(
        description="1 - score / 64, where the score weighs the distances of all the hashes into one "
        "(in bits; a match has a score of at most DOPPEL_MAX_SCORE unless confirm=false)."
    )
    dct_distance: int | None = Field(
        description="Hamming distance between the DCT hashes, one of the distances the score weighs; "
        "null when either side has none (e.g. a search by dHash alone)."
    )
    orientation: Orientation = Field(
        description="How the query is turned relative to this image (`rotate_90`: turned 90 degrees "
        "clockwise); always `original` unless all_orientations was asked."
    )
    exact: bool = Field(description="The uploaded files are byte for byte identical (same SHA-256).")
    metadata: dict[str, Any]

    @classmethod
    def of(cls, match: Match) -> "MatchOut":
        return cls(
            id=match.record.id,
            distance=match.distance,
            similarity=match.similarity,
            dct_distance=match.dct_distance,
            orientation=match.orientation,
            exact=match.exact,
            metadata=match.record.metadata,
        )


def matches_out(matches: list[Match]) -> list[MatchOut]:
    return [MatchOut.of(m) for m in matches]


def _hex_or_none(value: int | None) -> str | None:
    return None if value is None else hash_hex(value)


class ImageCreated(ImageOut):
    flat: bool = Field(description=FLAT)
    duplicates: list[MatchOut] = Field(description="Stored images that match this one.")

    @classmethod
    def of_added(cls, added: Added) -> "ImageCreated":
        duplicates = matches_out(added.duplicates)
        return cls(**ImageOut.of(added.record).model_dump(), flat=added.flat, duplicates=duplicates)


class PageOut(BaseModel):
    items: list[ImageOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last page.")

    @classmethod
    def of(cls, page: Page) -> "PageOut":
        return cls(items=[ImageOut.of(r) for r in page.items], next=page.next)


class SearchOut(BaseModel):
    hash: str = Field(description="The query's dHash, 16 hex digits.")
    vertical_hash: str | None = Field(description="The query's vertical dHash, when known.")
    dct_hash: str | None = Field(description="The query's DCT hash, when known.")
    flat: bool | None = Field(description=f"{FLAT} Null for a search by hash.")
    matches: list[MatchOut]

    @classmethod
    def of(cls, signature: Signature, matches: list[Match], *, flat: bool | None = None) -> "SearchOut":
        return cls(
            hash=hash_hex(signature.dhash),
            vertical_hash=_hex_or_none(signature.vertical),
            dct_hash=_hex_or_none(signature.dct),
            flat=flat,
            matches=matches_out(matches),
        )


class DuplicatesOut(BaseModel):
    id: str
    hash: str
    matches: list[MatchOut]


class HealthOut(BaseModel):
    status: str
    images: int = Field(description="Images in this replica's index.")


class ReadyOut(BaseModel):
    status: str = Field(description="`ready`, or `not ready` (with status 503).")
    images: int = Field(description="Images in this replica's index.")
    position: int = Field(description="The store's change-log position the index holds.")
    lag_ms: int | None = Field(
        description="Milliseconds since the index last held the store's newest change; null until loaded."
    )
    max_lag_ms: int = Field(description="The lag past which the replica is not ready (DOPPEL_MAX_LAG_MS).")


class ErrorOut(BaseModel):
    detail: Any = Field(description="What is wrong: a sentence, or FastAPI's list of field errors.")


class DuplicateOut(BaseModel):
    detail: str
    matches: list[MatchOut] = Field(
        default_factory=list, description="The stored images a refused copy copies; empty for an existing id."
    )


MAX_BATCH_ITEMS = 10_000  # hashes in one JSON batch
MAX_BATCH_FILES = 100  # files in one multipart batch


class BatchItemIn(BaseModel):
    id: str | None = Field(
        None, description="Your id for the image, 1-256 characters; generated when absent."
    )
    hash: str = Field(description="The dHash as 16 hex digits, e.g. str(imagehash.dhash(img)).")
    vertical_hash: str | None = Field(
        None, description="The vertical dHash as 16 hex digits, str(imagehash.dhash_vertical(img))."
    )
    dct_hash: str | None = Field(
        None,
        description="The DCT hash as 16 hex digits, as Doppel returns it; a candidate whose DCT hash is "
        "far from the query's is refuted. Without it, the dHash alone decides.",
    )
    centre: PartHashes | None = Field(
        None, description="The hashes of the picture's centre, as Doppel returns them (ImageOut)."
    )
    cuts: list[PartHashes] = Field(
        default_factory=list,
        max_length=MAX_CUTS,
        description="The hashes of the picture's other cuts, as Doppel returns them (ImageOut).",
    )
    hashing_version: int | None = Field(
        None,
        strict=True,
        description=f"The version of Doppel's hashing the hashes come from, 1-{HASHING_VERSION}; absent: "
        f"the current one ({HASHING_VERSION}).",
    )
    metadata: dict[str, Any] = Field(default_factory=dict, description="A JSON object of at most 16 KiB.")


class BatchIn(BaseModel):
    items: list[BatchItemIn] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class BatchOut(BaseModel):
    items: list[ImageOut] = Field(description="The stored records, in the order of the request.")


class BatchCreatedOut(BaseModel):
    items: list[ImageCreated] = Field(
        description="The stored records in the order of the files, each with its matches among the "
        "images stored before it, earlier files of the batch included."
    )


class PairOut(BaseModel):
    a: str = Field(description="The id of one image of the pair (the first in id order).")
    b: str = Field(description="The id of the other.")
    distance: int = Field(description="Hamming distance between their dHashes (the nearest orientation).")
    similarity: float = Field(description="1 - score / 64, the score of a match (MatchOut's similarity).")
    dct_distance: int | None = Field(
        description="Hamming distance between their DCT hashes; null if either has none."
    )
    exact: bool = Field(description="The uploaded files are byte for byte identical.")

    @classmethod
    def of(cls, pair: Pair) -> "PairOut":
        a, b = sorted((pair.a_id, pair.b_id))
        return cls(
            a=a,
            b=b,
            distance=pair.distance,
            similarity=1 - pair.score / 64,
            dct_distance=pair.dct_distance,
            exact=pair.exact,
        )


class GroupOut(BaseModel):
    size: int = Field(description="How many images the group holds.")
    members: list[ImageOut] = Field(description="The images, in id order.")
    pairs: list[PairOut] = Field(description="Every matching pair among them, nearest first.")


class GroupsOut(BaseModel):
    groups: list[GroupOut] = Field(description="Groups of duplicates, in the order of their first id.")
    total: int = Field(description="How many groups there are, on every page.")
    next: str | None = Field(description="Pass as `after` for the next page; null on the last page.")
    complete: bool = Field(
        description="False while the pairs are being built after a start: the groups found so far."
    )
    progress: float = Field(description="How far that build is, 0-1.")

    @classmethod
    def of(cls, page: GroupsPage) -> "GroupsOut":
        return cls(
            groups=[
                GroupOut(
                    size=len(group.members),
                    members=[ImageOut.of(r) for r in group.members],
                    pairs=[PairOut.of(p) for p in group.pairs],
                )
                for group in page.groups
            ],
            total=page.total,
            next=page.next,
            complete=page.complete,
            progress=page.progress,
        )
