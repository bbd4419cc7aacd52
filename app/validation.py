"""Rules for client-chosen values (ids, metadata, hashes). Pure; raise InvalidInput."""

import json
import math
import secrets
import unicodedata

from app.errors import ImageTooLarge, InvalidInput
from app.imaging import HASHING_VERSION, parse_hash_hex
from app.models import Metadata

MAX_ID_CHARS = 256
MAX_METADATA_BYTES = 16 * 1024
# Deeper metadata cannot be written back as JSON (the response serialiser stops near 255 levels),
# and no real metadata needs more.
MAX_METADATA_DEPTH = 32
# Control, surrogate, format (zero-width, direction overrides, BOM) and line/paragraph separators.
_REFUSED_CATEGORIES = {"Cc", "Cs", "Cf", "Zl", "Zp"}


def _character_class(refused: set[str], extra: str) -> str:
    """A regex class body naming every code point of the Basic Multilingual Plane in the `refused`
    categories or in `extra`, as \\u escapes: the schema's regex dialect (ECMA-262) has no escape
    for the planes above, where check_image_id also refuses some hundred format characters."""
    ranges: list[list[int]] = []
    for code in range(0x10000):
        if unicodedata.category(chr(code)) in refused or chr(code) in extra:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


# Without the surrogates: no UTF-8 text holds one, and the schema's regex engines refuse them.
_R = _character_class(_REFUSED_CATEGORIES - {"Cs"}, "/\ufffd")
# check_image_id's rule as a pattern, for the API schema (tests/test_validation.py holds the two
# equal): one allowed character that is not a space or '.', or several with no space at either end
# that are not '..'.
ID_PATTERN = rf"^(?:[^\s.{_R}]|[^\s.{_R}][^{_R}]*[^\s{_R}]|\.[^{_R}]*[^\s.{_R}]|\.[^{_R}]+[^\s{_R}])$"


def check_file_size(data: bytes, max_bytes: int) -> bytes:
    """An uploaded file of at most `max_bytes`; ImageTooLarge otherwise."""
    if len(data) > max_bytes:
        raise ImageTooLarge(f"the file is over the upload limit of {max_bytes} bytes")
    return data


def new_image_id() -> str:
    """A random id for an image uploaded without one: 16 URL-safe characters (96 bits)."""
    return secrets.token_urlsafe(12)


def check_image_id(image_id: str) -> str:
    """The id in Unicode NFC, so that two ids that look the same are the same id. It has 1-256
    characters, no '/' (it is part of URLs), no control, format or separator characters (no
    zero-width space, direction override or byte-order mark), no replacement character (what
    invalid UTF-8 in a URL decodes to), no space at either end, and is not '.' or '..'."""
    image_id = unicodedata.normalize("NFC", image_id)
    if not 1 <= len(image_id) <= MAX_ID_CHARS:
        raise InvalidInput(f"id must be 1 to {MAX_ID_CHARS} characters, got {len(image_id)}")
    if "/" in image_id or any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in image_id):
        raise InvalidInput("id must not contain '/', or control, format or separator characters")
    if "\ufffd" in image_id:
        raise InvalidInput("id must be valid UTF-8 (it holds U+FFFD, what invalid UTF-8 in a URL decodes to)")
    if image_id != image_id.strip():
        raise InvalidInput("id must not start or end with a space")
    if image_id in (".", ".."):
        raise InvalidInput("id must not be '.' or '..' (clients drop them from URLs)")
    return image_id


def parse_metadata(text: str | None) -> Metadata:
    """Metadata sent as a form field: a JSON object of at most 16 KiB; absent or empty means {}."""
    if text is None or text == "":
        return {}
    if len(text.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON")
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise InvalidInput(f"metadata must nest at most {MAX_METADATA_DEPTH} levels deep") from exc
    except ValueError as exc:
        raise InvalidInput(f"metadata is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InvalidInput("metadata must be a JSON object")
    return check_metadata(value)


def check_metadata(value: Metadata) -> Metadata:
    """Metadata as a parsed object: at most 16 KiB once written as JSON, at most 32 levels deep,
    finite numbers and valid Unicode only, so that it can always be written back as JSON."""
    if not value:  # most items of a hash batch carry none: no need to write it out
        return value
    _check_json_values(value)
    try:
        encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from the JSON escape "\ud800"
        raise InvalidInput("metadata must be valid Unicode: it holds a lone surrogate") from exc
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidInput(f"metadata must be at most {MAX_METADATA_BYTES} bytes of JSON")
    return value


def _check_json_values(value: object) -> None:
    # A loop, not recursion: the nesting depth is what is being checked.
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > MAX_METADATA_DEPTH:
                raise InvalidInput(f"metadata must nest at most {MAX_METADATA_DEPTH} levels deep")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidInput("metadata numbers must be finite (not NaN, Infinity or beyond 1.8e308)")


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not allowed in JSON")


def parse_optional_hash(text: str | None, name: str) -> int | None:
    """A hash that may be absent (None), else as parse_hash."""
    return None if text is None else parse_hash(text, name)


def parse_hash(text: str, name: str = "hash") -> int:
    """A 64-bit hash written as 16 hex digits, as imagehash prints it; `name` is the field's, for
    the error."""
    try:
        return parse_hash_hex(text.strip().lower())
    except ValueError as exc:
        shown = repr(text) if len(text) <= 32 else f"{len(text)} characters"
        raise InvalidInput(f"{name} must be 16 hex digits (a 64-bit hash), got {shown}") from exc


def check_hashing_version(version: int | None) -> int:
    """The hashing version a client gives its hashes: 1 to the current one; None means the current."""
    if version is None:
        return HASHING_VERSION
    if not 1 <= version <= HASHING_VERSION:
        raise InvalidInput(f"hashing_version must be 1 to {HASHING_VERSION} (this Doppel's), got {version}")
    return version
