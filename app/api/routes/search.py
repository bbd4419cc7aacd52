"""/search: find the stored images that look like a given one."""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServiceDep, SettingsDep
from app.api.errors import UPLOAD_ERRORS, error_responses
from app.api.params import HASH_SCHEMA, FileField, SearchOptionsDep
from app.api.schemas import SearchOut
from app.api.uploads import read_upload
from app.imaging import Signature
from app.validation import parse_hash, parse_optional_hash

router = APIRouter(prefix="/search", tags=["search"])


@router.post("", response_model=SearchOut, responses=error_responses(*UPLOAD_ERRORS))
async def search_by_image(
    service: ServiceDep, settings: SettingsDep, file: FileField, options: SearchOptionsDep
) -> SearchOut:
    """Stored images within `max_distance` of the uploaded image's dHash, nearest first. Nothing is stored."""
    data = await read_upload(file, max_bytes=settings.max_upload_bytes)
    upload, matches = await run_in_threadpool(service.matching.search, data, options=options)
    return SearchOut.of(upload.hashes.signature, matches, flat=upload.hashes.flat)


@router.get("", response_model=SearchOut, responses=error_responses(422))
async def search_by_hash(
    service: ServiceDep,
    options: SearchOptionsDep,
    query_hash: Annotated[
        str,
        Query(
            alias="hash",
            description="A dHash as 16 hex digits, e.g. str(imagehash.dhash(img)).",
            json_schema_extra=HASH_SCHEMA,
        ),
    ],
    vertical_hash: Annotated[
        str | None,
        Query(
            description="Its vertical dHash, str(imagehash.dhash_vertical(img)); needed for quarter turns.",
            json_schema_extra=HASH_SCHEMA,
        ),
    ] = None,
    dct_hash: Annotated[
        str | None,
        Query(
            description="Its DCT hash (as Doppel returns it); without it a match needs a closer dHash.",
            json_schema_extra=HASH_SCHEMA,
        ),
    ] = None,
) -> SearchOut:
    """The same search for hashes computed elsewhere."""
    signature = Signature(
        parse_hash(query_hash),
        parse_optional_hash(vertical_hash, "vertical_hash"),
        parse_optional_hash(dct_hash, "dct_hash"),
    )
    matches = await run_in_threadpool(service.matching.search_hash, signature, options=options)
    return SearchOut.of(signature, matches)
