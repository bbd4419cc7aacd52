"""Thumbnails: a small WebP of an image as a viewer sees it, for the page at `/`."""

from io import BytesIO

from PIL import Image

from app.imaging.hashing import open_image, orientation_to_apply, upright

THUMBNAIL_SIDE = 160  # the longest side, in pixels
WEBP_QUALITY = 70


def thumbnail_webp(data: bytes, *, side: int = THUMBNAIL_SIDE) -> bytes:
    """A WebP of the image's first frame, upright, its longest side at most `side` pixels.

    `data` must already have passed `hash_image_bytes` (which refuses what is too large or damaged).
    """
    image = open_image(data)
    if image.format == "JPEG":
        image.draft("RGB", (side, side))  # decode at a reduced scale, at least `side` on each side
    image.load()
    image = upright(image, orientation_to_apply(image))
    image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = BytesIO()
    image.save(out, format="WEBP", quality=WEBP_QUALITY, method=4)
    return out.getvalue()
