"""Reading uploaded files within the size limit."""

from fastapi import UploadFile

from app.errors import ImageTooLarge

# Room for the multipart framing and the small form fields (id, metadata) around the file.
FORM_OVERHEAD_BYTES = 64 * 1024


def read_upload(file: UploadFile, *, max_bytes: int) -> bytes:
    """The file's bytes; ImageTooLarge if it has more than `max_bytes`.

    The whole request body is already capped while it streams in (FastAPI's max_body_size), so
    this never holds more than the limit plus the form overhead.
    """
    data = file.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the file is over the upload limit of {max_bytes} bytes")
    return data
