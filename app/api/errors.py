"""The one place where domain errors become HTTP responses."""

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app import errors
from app.api.schemas import MatchOut

logger = logging.getLogger("doppel")

STATUS_OF: dict[type[errors.DoppelError], int] = {
    errors.UnsupportedImage: 415,
    errors.CorruptImage: 422,
    errors.ImageTooLarge: 413,
    errors.InvalidInput: 422,
    errors.ImageNotFound: 404,
    errors.ImageExists: 409,
    errors.DuplicateImage: 409,
}


def status_of(exc: errors.DoppelError) -> int:
    """The status for a domain error, found through its class hierarchy."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def register_exception_handlers(app: FastAPI) -> None:
    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.DoppelError)
        body: dict[str, object] = {"detail": exc.detail}
        if isinstance(exc, errors.DuplicateImage):
            body["matches"] = [MatchOut.of(m).model_dump(mode="json") for m in exc.matches]
        return JSONResponse(body, status_code=status_of(exc))

    async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    app.add_exception_handler(errors.DoppelError, domain_error)
    app.add_exception_handler(Exception, unexpected_error)
