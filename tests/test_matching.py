"""Matching quality on real photographs: edited copies are found, distinct photos are not."""

import io

import pytest
from fastapi.testclient import TestClient
from helpers import SHARED_IMAGES, encode, needs_shared, search, shared_files, upload
from PIL import Image, ImageEnhance, ImageOps

pytestmark = needs_shared

PHOTOS = 20


def edits(image: Image.Image) -> dict[str, bytes]:
    rgb = ImageOps.exif_transpose(image).convert("RGB")  # as a viewer shows it, then re-saved
    w, h = rgb.size
    return {
        "half size": encode(rgb.resize((w // 2, h // 2)), "JPEG", quality=85),
        "jpeg q40": encode(rgb, "JPEG", quality=40),
        "webp": encode(rgb, "WEBP", quality=70),
        "brighter": encode(ImageEnhance.Brightness(rgb).enhance(1.2), "PNG"),
    }


@pytest.fixture
def indexed(client: TestClient) -> list[tuple[str, Image.Image]]:
    photos: list[tuple[str, Image.Image]] = []
    for path in [p for p in shared_files("dev") if p.suffix == ".jpg"][:PHOTOS]:
        data = path.read_bytes()
        assert upload(client, data, path.stem).status_code == 201
        photos.append((path.stem, Image.open(io.BytesIO(data))))
    return photos


def test_resized_and_reencoded_copies_are_found(
    client: TestClient, indexed: list[tuple[str, Image.Image]]
) -> None:
    missed = []
    for image_id, image in indexed:
        for edit, data in edits(image).items():
            ids = [m["id"] for m in search(client, data).json()["matches"]]
            if image_id not in ids:
                missed.append((image_id, edit))
    assert missed == []


def test_distinct_photos_are_not_found(client: TestClient, indexed: list[tuple[str, Image.Image]]) -> None:
    others = [p for p in shared_files("dev") if p.suffix == ".jpg"][PHOTOS : PHOTOS + 20]
    wrong = [(p.name, search(client, p.read_bytes()).json()["matches"]) for p in others]
    assert [w for w in wrong if w[1]] == []


def test_natural_duplicates_group(client: TestClient) -> None:
    folder = shared_files("natural")
    for path in folder:
        if "_" not in path.stem:
            upload(client, path.read_bytes(), path.stem)
    for path in folder:
        if path.stem in ("0056_4", "0056_5") or "_" not in path.stem:
            continue  # the flipped and rotated copies need all_orientations
        ids = [m["id"] for m in search(client, path.read_bytes()).json()["matches"]]
        assert ids == [path.stem.split("_")[0]], path.name


def test_flipped_and_turned_real_photos_are_found_with_all_orientations(
    client: TestClient, indexed: list[tuple[str, Image.Image]]
) -> None:
    turns = [Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180]
    missed = []
    for image_id, image in indexed:
        for turn in turns:
            data = encode(ImageOps.exif_transpose(image).convert("RGB").transpose(turn), "JPEG", quality=85)
            ids = [m["id"] for m in search(client, data, all_orientations="true").json()["matches"]]
            if image_id not in ids:
                missed.append((image_id, turn.name))
    assert len(missed) <= len(indexed) * len(turns) // 20, missed  # at least 95% found


def test_textures_that_fool_the_dhash_are_not_confirmed(client: TestClient) -> None:
    canvas, watercolour = SHARED_IMAGES / "dev" / "0258.png", SHARED_IMAGES / "dev" / "0259.png"
    upload(client, canvas.read_bytes(), "canvas")
    unconfirmed = search(client, watercolour.read_bytes(), confirm="false").json()["matches"]
    assert [m["id"] for m in unconfirmed] == ["canvas"]  # within 10 bits of dHash
    assert unconfirmed[0]["dct_distance"] > 16
    assert search(client, watercolour.read_bytes()).json()["matches"] == []
