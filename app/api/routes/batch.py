"""/images/batch: add many images in one transaction, by hash (JSON) or by file (multipart)."""

from typing import Any

from fastapi import APIRouter, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from app.api.deps import ServiceDep, SettingsDep
from app.api.params import SearchOptionsDep
from app.api.responses import JSONLine
from app.api.schemas import (
    MAX_BATCH_FILES,
    BatchCreatedOut,
    BatchIn,
    BatchOut,
    ErrorOut,
    ImageCreated,
    ImageOut,
)
from app.errors import InvalidInput, UnsupportedBody
from app.models import FileItem, HashItem

router = APIRouter(prefix="/images", tags=["images"])

# The route reads its body itself (JSON or multipart), so OpenAPI is told both shapes here.
_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": BatchIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "id": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "None, or one per file in the same order (empty: generate one).",
                        },
                        "metadata": {
                            "type": "array",
                            "items": {"type": "string"},
                            "description": "None, or one JSON object per file in the same order (empty: {}).",
                        },
                    },
                }
            },
        },
    }
}


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchOut | BatchCreatedOut,
    openapi_extra=_REQUEST_BODY,
    responses={
        code: {"model": ErrorOut, "description": why}
        for code, why in (
            (400, "The body is not well-formed multipart/form-data, or has over 100 files; nothing stored."),
            (409, "Ids already stored; nothing stored."),
            (413, "The body, or files in it, over the limits; nothing stored."),
            (415, "Not JSON or multipart, or files that are not images; nothing stored."),
            (422, "Bad or damaged items, or refusals of several kinds; nothing stored."),
            (507, "The store is full; nothing stored."),
        )
    },
)
async def add_batch(
    request: Request, service: ServiceDep, settings: SettingsDep, options: SearchOptionsDep
) -> JSONLine:
    """Add many images in one transaction, all or nothing: up to 10,000 hashes computed elsewhere
    (JSON `{"items": [{"id", "hash", "vertical_hash", "dct_hash", "hashing_version", "metadata"}]}`,
    only `hash` required) or up to 100 files (multipart `file` parts,
    with optional `id` and `metadata` parts, one per file). Any refused item refuses the batch,
    naming each item at fault. The search parameters shape each file's `duplicates`."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == "application/json":
        body = await request.body()

        # Off the event loop: validating and answering 10,000 items takes long enough to stall
        # every other request.
        def add_hashes() -> JSONLine:
            records = service.ingest.add_hashes(_hash_items(body))
            answer = BatchOut(items=[ImageOut.of(record) for record in records])
            return JSONLine(answer.model_dump(mode="json"), status_code=status.HTTP_201_CREATED)

        return await run_in_threadpool(add_hashes)
    if media_type == "multipart/form-data":
        # A body that is not well-formed multipart is a 400, as for every upload.
        form = await request.form(max_files=MAX_BATCH_FILES, max_fields=2 * MAX_BATCH_FILES)
        try:
            files = await _file_items(form, max_bytes=settings.max_upload_bytes)
        finally:
            await form.close()

        def add_files() -> JSONLine:
            results = service.ingest.add_files(
                files, max_file_bytes=settings.max_upload_bytes, options=options
            )
            answer = BatchCreatedOut(items=[ImageCreated.of_added(added) for added in results])
            return JSONLine(answer.model_dump(mode="json"), status_code=status.HTTP_201_CREATED)

        return await run_in_threadpool(add_files)
    raise UnsupportedBody("send application/json (hashes) or multipart/form-data (files)")


def _hash_items(body: bytes) -> list[HashItem]:
    try:
        batch = BatchIn.model_validate_json(body)
    except ValidationError as exc:
        # Reported like any other body FastAPI validates: 422, with the item's index.
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from exc
    return [
        HashItem(
            hash=item.hash,
            id=item.id,
            metadata=item.metadata,
            vertical_hash=item.vertical_hash,
            dct_hash=item.dct_hash,
            centre=None if item.centre is None else item.centre.texts(),
            cuts=tuple(cut.texts() for cut in item.cuts),
            hashing_version=item.hashing_version,
        )
        for item in batch.items
    ]


async def _file_items(form: FormData, *, max_bytes: int) -> list[FileItem]:
    """The `file` parts with their `id` and `metadata` parts, paired by order."""
    parts = form.getlist("file")
    if not parts:
        raise InvalidInput("a multipart batch needs at least one `file` part")
    files = [part for part in parts if isinstance(part, UploadFile)]
    if len(files) != len(parts):
        raise InvalidInput("every `file` part must be a file")
    ids = _parallel_fields(form, "id", len(files))
    metadata = _parallel_fields(form, "metadata", len(files))
    # Read one byte past the limit at most: the service refuses that file as too large.
    return [
        FileItem(data=await file.read(max_bytes + 1), id=image_id, metadata=meta)
        for file, image_id, meta in zip(files, ids, metadata, strict=True)
    ]


def _parallel_fields(form: FormData, name: str, count: int) -> list[str | None]:
    """A text part per file, in the files' order (an empty one means none), or no such part at all."""
    parts = form.getlist(name)
    if not parts:
        return [None] * count
    values = [part for part in parts if isinstance(part, str)]
    if len(values) != len(parts):
        raise InvalidInput(f"`{name}` parts must be text, not files")
    if len(values) != count:
        raise InvalidInput(
            f"give one `{name}` text part per `file` part ({count}, empty for none) or none at all, "
            f"not {len(values)}"
        )
    return [value or None for value in values]
