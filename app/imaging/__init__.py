"""Imaging: decode an image as a viewer sees it and hash it. Pure functions; the one door for the
rest of the service is `hash_image_bytes`, with the hash values and helpers below (and
`thumbnail_webp` for the page's pictures)."""

from app.imaging.hashing import (
    HASHING_VERSION,
    MAX_CUTS,
    ImageHashes,
    Parts,
    Signature,
    hamming,
    has_transparency,
    hash_hex,
    hash_image_bytes,
    on_white,
    parse_hash_hex,
)
from app.imaging.orientation import variants_of_hashes, variants_of_image, variants_of_stored
from app.imaging.thumbnail import thumbnail_webp

__all__ = [
    "HASHING_VERSION",
    "MAX_CUTS",
    "ImageHashes",
    "Parts",
    "Signature",
    "hamming",
    "has_transparency",
    "hash_hex",
    "hash_image_bytes",
    "on_white",
    "parse_hash_hex",
    "thumbnail_webp",
    "variants_of_hashes",
    "variants_of_image",
    "variants_of_stored",
]
