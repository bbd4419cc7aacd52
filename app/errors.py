"""Domain errors. They know nothing of HTTP; app/api/errors.py maps them to status codes."""

from dataclasses import dataclass

from app.models import Match


class DoppelError(Exception):
    """Base of every error Doppel reports to a client."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnsupportedImage(DoppelError):
    """The bytes are not an image, or not in a format Doppel reads."""


class CorruptImage(DoppelError):
    """The bytes claim a known image format but cannot be decoded (truncated, damaged)."""


class ImageTooLarge(DoppelError):
    """The upload has more bytes or more pixels than the configured limits."""


class InvalidInput(DoppelError):
    """A parameter or field is malformed (bad id, bad metadata, bad hash)."""


class ImageNotFound(DoppelError):
    """No stored image has the given id."""

    def __init__(self, image_id: str) -> None:
        super().__init__(f"no image with id {image_id!r}")
        self.image_id = image_id


class NoThumbnail(DoppelError):
    """The image has no thumbnail: added by its hash alone, or while thumbnails were off."""

    def __init__(self, image_id: str) -> None:
        super().__init__(f"the image {image_id!r} has no thumbnail")


class ImageExists(DoppelError):
    """Images with the given ids are already stored (or an id is given twice in one request)."""

    def __init__(self, image_ids: list[str]) -> None:
        shown = ", ".join(repr(i) for i in image_ids[:20])
        more = f" and {len(image_ids) - 20} more" if len(image_ids) > 20 else ""
        noun = "an image with id" if len(image_ids) == 1 else "images with ids"
        super().__init__(f"{noun} {shown}{more} already exist{'s' if len(image_ids) == 1 else ''}")
        self.image_ids = image_ids


class DuplicateImage(DoppelError):
    """The upload copies stored images and the client asked to refuse copies."""

    def __init__(self, matches: list[Match]) -> None:
        super().__init__(f"the image is a copy of {len(matches)} stored image(s); nothing was stored")
        self.matches = matches


class StoreUnavailable(DoppelError):
    """The database cannot be reached, or the index cannot catch up with it; try again later.
    Nothing acknowledged is lost."""


class StoreFull(DoppelError):
    """The store has no room left (its disk, or the database's): writes that add are refused until
    space is freed; reads and deletes still work. Nothing acknowledged is lost."""


class UnsupportedBody(DoppelError):
    """The request body is in a form the operation does not take (e.g. neither JSON nor multipart)."""


@dataclass(frozen=True, slots=True)
class ItemFault:
    """Why one item of a batch is refused: its 0-based position, its id if it had one, the error."""

    index: int
    id: str | None
    error: DoppelError


class BatchRejected(DoppelError):
    """Some items of a batch are refused, so none of the batch is stored."""

    def __init__(self, faults: list[ItemFault]) -> None:
        noun = "item is" if len(faults) == 1 else "items are"
        super().__init__(f"{len(faults)} {noun} refused; nothing was stored")
        self.faults = faults
