"""/images: index, replace, read, list and delete images."""

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServiceDep, SettingsDep
from app.api.errors import WRITE_ERRORS, error_responses
from app.api.params import FileField, IdField, IdPath, MetadataField, SearchOptionsDep
from app.api.schemas import DuplicateOut, DuplicatesOut, ImageCreated, ImageOut, PageOut, matches_out
from app.api.uploads import read_upload
from app.imaging import hash_hex
from app.service.ingest import OnDuplicate
from app.validation import parse_metadata

router = APIRouter(prefix="/images", tags=["images"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ImageCreated,
    responses=error_responses(*WRITE_ERRORS)
    | {
        409: {
            "model": DuplicateOut,
            "description": "The id exists, or a copy refused by on_duplicate (`matches`).",
        }
    },
)
async def add_image(
    service: ServiceDep,
    settings: SettingsDep,
    file: FileField,
    options: SearchOptionsDep,
    image_id: IdField = None,
    metadata: MetadataField = None,
    on_duplicate: Annotated[
        OnDuplicate,
        Query(
            description="`reject`: refuse (409) when any stored image matches; "
            "`reject_exact`: only identical bytes."
        ),
    ] = OnDuplicate.ALLOW,
) -> ImageCreated:
    """Index an image. Answers with the record and its matches among the images stored before it."""
    data = await read_upload(file, max_bytes=settings.max_upload_bytes)
    added = await run_in_threadpool(
        service.ingest.add,
        data,
        image_id=image_id,
        metadata=parse_metadata(metadata),
        options=options,
        on_duplicate=on_duplicate,
    )
    return ImageCreated.of_added(added)


@router.put(
    "/{image_id}",
    response_model=ImageCreated,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": ImageCreated, "description": "Replaced the image under this id."},
        **error_responses(*WRITE_ERRORS),
    },
)
async def put_image(
    image_id: IdPath,
    service: ServiceDep,
    settings: SettingsDep,
    response: Response,
    file: FileField,
    options: SearchOptionsDep,
    metadata: MetadataField = None,
) -> ImageCreated:
    """Create (201) or replace (200) the image under this id."""
    data = await read_upload(file, max_bytes=settings.max_upload_bytes)
    added = await run_in_threadpool(
        service.ingest.put, image_id, data, metadata=parse_metadata(metadata), options=options
    )
    if not added.created:
        response.status_code = status.HTTP_200_OK
    return ImageCreated.of_added(added)


@router.get("", response_model=PageOut, responses=error_responses(422))
async def list_images(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size.")] = 100,
    after: Annotated[
        str | None, Query(max_length=256, description="The `next` cursor of the previous page.")
    ] = None,
) -> PageOut:
    """Stored images in id order, a page at a time."""
    return PageOut.of(await run_in_threadpool(service.page, limit=limit, after=after))


@router.get("/{image_id}", response_model=ImageOut, responses=error_responses(404, 422))
async def get_image(image_id: IdPath, service: ServiceDep) -> ImageOut:
    """One stored image."""
    return ImageOut.of(await run_in_threadpool(service.get, image_id))


@router.delete("/{image_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404, 422))
async def delete_image(image_id: IdPath, service: ServiceDep) -> Response:
    """Delete an image; it never appears in results again."""
    await run_in_threadpool(service.ingest.delete, image_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{image_id}/duplicates", response_model=DuplicatesOut, responses=error_responses(404, 422))
async def image_duplicates(image_id: IdPath, service: ServiceDep, options: SearchOptionsDep) -> DuplicatesOut:
    """The stored images that match a stored one, itself left out."""
    record, matches = await run_in_threadpool(service.matching.duplicates_of, image_id, options=options)
    return DuplicatesOut(id=record.id, hash=hash_hex(record.dhash), matches=matches_out(matches))


@router.get(
    "/{image_id}/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/webp": {}}, "description": "The thumbnail, WebP."},
        **error_responses(404, 422),
    },
)
async def image_thumbnail(image_id: IdPath, service: ServiceDep) -> Response:
    """A small picture of a stored image (longest side at most 160 px, WebP); 404 for an image
    added by its hash alone or while DOPPEL_THUMBNAILS was false."""
    return Response(await run_in_threadpool(service.thumbnail, image_id), media_type="image/webp")
