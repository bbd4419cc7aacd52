"""The one place where domain errors become HTTP responses, and where error responses are documented."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app import errors
from app.api.responses import JSONLine
from app.api.schemas import ErrorOut, MatchOut

logger = logging.getLogger("doppel")

STATUS_OF: dict[type[errors.DoppelError], int] = {
    errors.UnsupportedImage: 415,
    errors.CorruptImage: 422,
    errors.ImageTooLarge: 413,
    errors.InvalidInput: 422,
    errors.ImageNotFound: 404,
    errors.NoThumbnail: 404,
    errors.ImageExists: 409,
    errors.DuplicateImage: 409,
    errors.UnsupportedBody: 415,
    errors.StoreUnavailable: 503,
    errors.StoreFull: 507,
}
# A refusal names at most this many faults, each in at most this many characters, and never
# echoes the input: a 40 MB body refused item by item must not come back as a 40 MB answer.
MAX_LISTED = 100
MAX_REASON_CHARS = 300
# How long a client is asked to wait before retrying while the database is away (seconds).
RETRY_AFTER_S = 1
# A batch refused for items of different kinds (say one damaged file, one taken id).
MIXED_BATCH_STATUS = 422

# What each error status means, for the OpenAPI schema. Every error body is {"detail": ...}.
ERROR_MEANING: dict[int, str] = {
    400: "The body is not well-formed multipart/form-data.",
    401: "The API key is missing or wrong (only when DOPPEL_API_KEY is set).",
    404: "No image with that id (or, for a thumbnail, the image has none).",
    409: "An image with that id is already stored, or (with on_duplicate) the upload copies stored images.",
    413: "The body or the file is over DOPPEL_MAX_UPLOAD_BYTES, or the image over DOPPEL_MAX_PIXELS.",
    415: "Not an image, or a format Doppel does not read.",
    422: "A damaged image, or a missing or malformed field or parameter.",
    503: "The database is out of reach, or this replica's index lags it; retry (see Retry-After).",
    507: "The store is full (no space left on its disk); nothing was stored. Deletes still work.",
}
UPLOAD_ERRORS = (400, 413, 415, 422)
WRITE_ERRORS = (*UPLOAD_ERRORS, 507)
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` entry of a route for the error statuses it can answer."""
    return {status: {"model": ErrorOut, "description": ERROR_MEANING[status]} for status in statuses}


def status_of(exc: errors.DoppelError) -> int:
    """The status for a domain error, found through its class hierarchy."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def batch_status(exc: errors.BatchRejected) -> int:
    """The status its items share (409 when every refused item has a taken id), else 422."""
    statuses = {status_of(fault.error) for fault in exc.faults}
    return statuses.pop() if len(statuses) == 1 else MIXED_BATCH_STATUS


def batch_detail(exc: errors.BatchRejected) -> list[dict[str, object]]:
    """One entry per refused item, the first MAX_LISTED of them: where it is in the request, its id,
    its own status and why."""
    listed: list[dict[str, object]] = [
        {"index": f.index, "id": f.id, "status": status_of(f.error), "reason": _cut(f.error.detail)}
        for f in exc.faults[:MAX_LISTED]
    ]
    if len(exc.faults) > MAX_LISTED:
        listed.append({"index": None, "id": None, "status": None, "reason": _more(len(exc.faults))})
    return listed


def validation_detail(exc: RequestValidationError) -> list[dict[str, object]]:
    """FastAPI's field errors without the input they refer to (a client has it; a large body would
    come back whole), each message cut short, the first MAX_LISTED of them."""
    found = exc.errors()
    listed: list[dict[str, object]] = [
        {"type": error["type"], "loc": list(error["loc"]), "msg": _cut(str(error["msg"]))}
        for error in found[:MAX_LISTED]
    ]
    if len(found) > MAX_LISTED:
        listed.append({"type": "too_many_errors", "loc": [], "msg": _more(len(found))})
    return listed


def _cut(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "\u2026"


def _more(total: int) -> str:
    return f"and {total - MAX_LISTED:,} more not listed ({total:,} in all)"


def register_exception_handlers(app: FastAPI) -> None:
    async def domain_error(request: Request, exc: Exception) -> JSONLine:
        assert isinstance(exc, errors.DoppelError)
        if isinstance(exc, errors.BatchRejected):
            return JSONLine({"detail": batch_detail(exc)}, status_code=batch_status(exc))
        body: dict[str, object] = {"detail": exc.detail}
        if isinstance(exc, errors.DuplicateImage):
            body["matches"] = [MatchOut.of(m).model_dump(mode="json") for m in exc.matches]
        unavailable = isinstance(exc, errors.StoreUnavailable)
        headers = {"Retry-After": str(RETRY_AFTER_S)} if unavailable else None
        return JSONLine(body, status_code=status_of(exc), headers=headers)

    async def http_error(request: Request, exc: Exception) -> JSONLine:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 405:
            # The router names only the first route that matched the path; HTTP wants every method.
            exc.headers = {"Allow": ", ".join(allowed_methods(app, request))}
        return JSONLine({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def invalid_request(request: Request, exc: Exception) -> JSONLine:
        assert isinstance(exc, RequestValidationError)
        return JSONLine({"detail": validation_detail(exc)}, status_code=422)

    async def unexpected_error(request: Request, exc: Exception) -> JSONLine:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        # The server closes the connection after an unexpected error: say so, so that the client
        # does not send its next request on it.
        return JSONLine({"detail": "internal error"}, status_code=500, headers={"Connection": "close"})

    app.add_exception_handler(errors.DoppelError, domain_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected_error)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods some route answers at the request's path. A path written out in full (like
    /images/batch) speaks for itself: the routes with a parameter there (/images/{image_id}) do
    not add their methods to it."""
    written_out = app.openapi()["paths"].get(request.url.path)
    if written_out is not None:
        return [method for method in _METHODS if method.lower() in written_out]

    def answers(method: str) -> bool:
        scope = {**request.scope, "method": method}
        return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)

    return [method for method in _METHODS if answers(method)]
