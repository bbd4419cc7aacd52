"""The one place where domain errors become HTTP responses."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app import errors

logger = logging.getLogger("doppel")

STATUS_OF: dict[type[errors.DoppelError], int] = {
    errors.UnsupportedImage: 415,
    errors.CorruptImage: 422,
    errors.ImageTooLarge: 413,
    errors.InvalidInput: 422,
    errors.ImageNotFound: 404,
    errors.ImageExists: 409,
    errors.UnsupportedBody: 415,
}
# A batch refused for items of different kinds (say one damaged file, one taken id).
MIXED_BATCH_STATUS = 422


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
    """One entry per refused item: where it is in the request, its id, its own status and why."""
    return [
        {"index": f.index, "id": f.id, "status": status_of(f.error), "reason": f.error.detail} for f in exc.faults
    ]


def register_exception_handlers(app: FastAPI) -> None:
    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.DoppelError)
        if isinstance(exc, errors.BatchRejected):
            return JSONResponse({"detail": batch_detail(exc)}, status_code=batch_status(exc))
        return JSONResponse({"detail": exc.detail}, status_code=status_of(exc))

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_exception_handler(errors.DoppelError, domain_error)
    app.add_exception_handler(Exception, unexpected_error)
