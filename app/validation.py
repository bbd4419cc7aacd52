"""Rules for client-chosen values (ids, metadata, hashes). Pure; raise InvalidInput."""

import json
import secrets
import unicodedata

from app.errors import InvalidInput
from app.hashing import parse_hash_hex
from app.models import Metadata

MAX_ID_CHARS = 256
MAX_METADATA_BYTES = 16 * 1024


def new_image_id() -> str:
    """A random id for an image uploaded without one: 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def check_image_id(image_id: str) -> str:
    """An id is 1-256 characters, with no '/' (it is part of URLs) and no control characters."""
    if not 1 <= len(image_id) <= MAX_ID_CHARS:
        raise InvalidInput(f"id must be 1 to {MAX_ID_CHARS} characters, got {len(image_id)}")
    if "/" in image_id or any(unicodedata.category(c) in ("Cc", "Cs") for c in image_id):
        raise InvalidInput("id must not contain '/' or control characters")
    return image_id


def parse_metadata(text: str | None) -> Metadata:
    """Metadata sent as a form field: a JSON object of at most 16 KiB; absent or empty means {}."""
    if text is None or text == "":
        return {}
    if len(text.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON")
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object")
    return value


def check_metadata(value: Metadata) -> Metadata:
    """Metadata given as an already parsed object: at most 16 KiB once written as JSON."""
    if not value:  # most items of a hash batch carry none: no need to write it out
        return value
    if len(json.dumps(value, separators=(",", ":")).encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return value


def parse_hash(text: str) -> int:
    """A dHash written as 16 hex digits, as imagehash prints it."""
    try:
        return parse_hash_hex(text.strip().lower())
    except ValueError as exc:
        raise InvalidInput(f"hash must be 16 hex digits (a 64-bit dHash), got {text!r}") from exc
