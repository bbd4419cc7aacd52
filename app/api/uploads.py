"""Upload size limits: the request body is capped while it streams in, the file after parsing."""

from fastapi import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.responses import JSONLine
from app.validation import check_file_size

# Room for the multipart framing and the small form fields (id, metadata) around the file.
FORM_OVERHEAD_BYTES = 64 * 1024


async def read_upload(file: UploadFile, *, max_bytes: int) -> bytes:
    """The file's bytes; ImageTooLarge if it has more than `max_bytes`. (A file held in memory is
    read without a thread-pool hop; one spooled to disk is read on the pool.)"""
    return check_file_size(await file.read(max_bytes + 1), max_bytes)


class BodySizeLimit:
    """ASGI middleware refusing request bodies over `max_bytes` with 413, before they are held.

    `path_limits` gives other limits to the paths that take larger bodies (the batch upload).
    A declared Content-Length over the limit is refused without reading the body; a body that
    streams past the limit stops being read at that point.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.path_limits.get(scope["path"], self.max_bytes)
        detail = f"the request body is over the limit of {max_bytes} bytes"
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > max_bytes:
            await JSONLine({"detail": detail}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > max_bytes:
                # An HTTPException passes through the form parser to FastAPI's JSON handler.
                raise HTTPException(status_code=413, detail=detail)
            return message

        await self.app(scope, limited_receive, send)
