"""Request parameters shared by several routes."""

from typing import Annotated

from fastapi import File, Form, Query, UploadFile

FileField = Annotated[UploadFile, File(description="The image: JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC or AVIF.")]
IdField = Annotated[
    str | None, Form(alias="id", description="Your id for the image, 1-256 characters; generated when absent.")
]
MetadataField = Annotated[str | None, Form(description="A JSON object of at most 16 KiB, returned with the image.")]
MaxDistance = Annotated[
    int | None,
    Query(ge=0, le=64, description="Match at or under this Hamming distance (bits); default DOPPEL_MAX_DISTANCE."),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="At most this many matches.")]
