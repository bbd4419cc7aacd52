"""/search: find the stored images that look like a given one."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ServiceDep, SettingsDep
from app.api.params import FileField, SearchOptionsDep
from app.api.schemas import SearchOut, matches_out
from app.api.uploads import read_upload
from app.hashing import hash_hex
from app.validation import parse_hash

router = APIRouter(prefix="/search", tags=["search"])


@router.post("", response_model=SearchOut)
def search_by_image(service: ServiceDep, settings: SettingsDep, file: FileField, options: SearchOptionsDep) -> SearchOut:
    """Stored images within `max_distance` of the uploaded image's dHash, nearest first. Nothing is stored."""
    data = read_upload(file, max_bytes=settings.max_upload_bytes)
    upload, matches = service.search(data, options=options)
    return SearchOut(hash=hash_hex(upload.hashes.dhash), matches=matches_out(matches))


@router.get("", response_model=SearchOut)
def search_by_hash(
    service: ServiceDep,
    options: SearchOptionsDep,
    query_hash: Annotated[
        str, Query(alias="hash", description="A dHash as 16 hex digits, e.g. str(imagehash.dhash(img)).")
    ],
    vertical_hash: Annotated[
        str | None,
        Query(description="Its vertical dHash, str(imagehash.dhash_vertical(img)); without it nothing is confirmed."),
    ] = None,
) -> SearchOut:
    """The same search for hashes computed elsewhere."""
    dhash = parse_hash(query_hash)
    vertical = None if vertical_hash is None else parse_hash(vertical_hash)
    return SearchOut(hash=hash_hex(dhash), matches=matches_out(service.search_hash(dhash, vertical, options=options)))
