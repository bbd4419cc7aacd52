"""Request parameters shared by several routes."""

from typing import Annotated

from fastapi import Depends, File, Form, Path, Query, UploadFile

from app.service.matching import SearchOptions
from app.validation import ID_PATTERN, MAX_ID_CHARS

# Documentation only (json_schema_extra): app.validation.check_image_id holds the rule.
ID_SCHEMA = {"minLength": 1, "maxLength": MAX_ID_CHARS, "pattern": ID_PATTERN}
ID_RULE = (
    "1-256 characters, taken in Unicode NFC; no '/', no control, format or separator characters, "
    "no space at either end, not '.' or '..'"
)
HASH_SCHEMA = {"pattern": "^[0-9a-fA-F]{16}$"}

FileField = Annotated[
    UploadFile, File(description="The image: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC or AVIF.")
]
IdField = Annotated[
    str | None,
    Form(
        alias="id",
        description=f"Your id for the image: {ID_RULE}; generated when absent.",
        json_schema_extra=ID_SCHEMA,
    ),
]
IdPath = Annotated[str, Path(description=f"The image's id: {ID_RULE}.", json_schema_extra=ID_SCHEMA)]
MetadataField = Annotated[
    str | None, Form(description="A JSON object of at most 16 KiB and 32 levels, returned with the image.")
]
MaxDistance = Annotated[
    int | None,
    Query(
        ge=0,
        le=64,
        description="Candidates at or under this dHash distance (bits), then judged by their score; "
        "default DOPPEL_MAX_DISTANCE.",
    ),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many matches.")]
Confirm = Annotated[
    bool,
    Query(
        description="Keep only candidates whose score (all their hashes weighed together) is at "
        "most DOPPEL_MAX_SCORE; false returns every dHash candidate."
    ),
]
AllOrientations = Annotated[
    bool, Query(description="Also find copies that were mirrored or turned by 90, 180 or 270 degrees.")
]


# `async` for the reason given in app/api/deps.py: a sync dependency costs a thread-pool hop.
async def search_options(
    max_distance: MaxDistance = None,
    limit: Limit = 100,
    confirm: Confirm = True,
    all_orientations: AllOrientations = False,
) -> SearchOptions:
    """The search query parameters shared by every route that returns matches."""
    return SearchOptions(
        max_distance=max_distance, limit=limit, confirm=confirm, all_orientations=all_orientations
    )


SearchOptionsDep = Annotated[SearchOptions, Depends(search_options)]
