"""/search: find the stored images that look like a given one."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.api.deps import ServiceDep, SettingsDep
from app.api.errors import UPLOAD_ERRORS, error_responses
from app.api.params import HASH_SCHEMA, FileField, Limit, MaxDistance
from app.api.schemas import SearchOut, matches_out
from app.api.uploads import read_upload
from app.hashing import hash_hex
from app.validation import parse_hash

router = APIRouter(prefix="/search", tags=["search"])


@router.post("", response_model=SearchOut, responses=error_responses(*UPLOAD_ERRORS))
def search_by_image(
    service: ServiceDep, settings: SettingsDep, file: FileField, max_distance: MaxDistance = None, limit: Limit = 100
) -> SearchOut:
    """Stored images within `max_distance` of the uploaded image's dHash, nearest first."""
    data = read_upload(file, max_bytes=settings.max_upload_bytes)
    dhash, matches = service.search(data, max_distance=max_distance, limit=limit)
    return SearchOut(hash=hash_hex(dhash), matches=matches_out(matches))


@router.get("", response_model=SearchOut, responses=error_responses(422))
def search_by_hash(
    service: ServiceDep,
    query_hash: Annotated[
        str,
        Query(
            alias="hash",
            description="A dHash as 16 hex digits, e.g. str(imagehash.dhash(img)).",
            json_schema_extra=HASH_SCHEMA,
        ),
    ],
    max_distance: MaxDistance = None,
    limit: Limit = 100,
) -> SearchOut:
    """The same search for a hash computed elsewhere."""
    dhash = parse_hash(query_hash)
    return SearchOut(hash=hash_hex(dhash), matches=matches_out(service.search_hash(dhash, max_distance=max_distance, limit=limit)))
