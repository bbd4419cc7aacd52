"""Thumbnails: made from the upload as a viewer sees it, kept with the image, served as WebP."""

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from helpers import encode, encode_oriented, make_photo, upload
from PIL import Image

from app.config import Settings
from app.factory import create_app
from app.imaging import thumbnail_webp


def thumbnail_of(client: TestClient, image_id: str) -> Image.Image:
    response = client.get(f"/images/{image_id}/thumbnail")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "WEBP"
    return image


def test_an_upload_gets_a_thumbnail_of_at_most_160_pixels(client: TestClient) -> None:
    upload(client, encode(make_photo(1, (1200, 600)), "JPEG", quality=90), "wide")
    upload(client, encode(make_photo(2, (90, 120)), "PNG"), "small")
    assert thumbnail_of(client, "wide").size == (160, 80)
    assert thumbnail_of(client, "small").size == (90, 120)  # never enlarged


def test_the_thumbnail_shows_the_picture_upright_and_in_colour(client: TestClient) -> None:
    photo = Image.new("RGB", (400, 200), (220, 30, 30))
    photo.paste((30, 30, 220), (0, 0, 200, 200))  # blue on the left, red on the right
    upload(client, encode_oriented(photo, 6, quality=95), "turned")  # stored turned, EXIF says 6
    shown = thumbnail_of(client, "turned").convert("RGB")
    assert shown.size == (160, 80)
    left, right = shown.getpixel((20, 40)), shown.getpixel((140, 40))
    assert isinstance(left, tuple) and isinstance(right, tuple)
    assert left[2] > 150 > left[0] and right[0] > 150 > right[2]


def test_a_transparent_image_keeps_its_transparency() -> None:
    image = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    image.paste((0, 200, 0, 255), (100, 100, 200, 200))
    thumbnail = Image.open(io.BytesIO(thumbnail_webp(encode(image))))
    assert thumbnail.mode == "RGBA" and thumbnail.size == (160, 160)
    corner, centre = thumbnail.getpixel((5, 5)), thumbnail.getpixel((80, 80))
    assert isinstance(corner, tuple) and isinstance(centre, tuple)
    assert corner[3] == 0 and centre[3] == 255


def test_no_thumbnail_for_hash_only_missing_or_deleted_images(client: TestClient) -> None:
    client.post("/images/batch", json={"items": [{"id": "h", "hash": "0123456789abcdef"}]})
    upload(client, encode(make_photo(3), "PNG"), "gone")
    client.delete("/images/gone")
    for image_id, words in (("h", "has no thumbnail"), ("missing", "no image"), ("gone", "no image")):
        response = client.get(f"/images/{image_id}/thumbnail")
        assert response.status_code == 404
        assert words in response.json()["detail"]
    assert client.get("/images/%20bad/thumbnail").status_code == 422


def test_a_replaced_image_gets_the_new_thumbnail(client: TestClient) -> None:
    upload(client, encode(make_photo(4, (320, 320)), "PNG"), "x")
    client.put("/images/x", files={"file": ("f", encode(make_photo(5, (320, 160)), "PNG"))})
    assert thumbnail_of(client, "x").size == (160, 80)


def test_batch_files_get_thumbnails(client: TestClient) -> None:
    files = [("file", (f"f{n}", encode(make_photo(n, (200, 400)), "PNG"))) for n in range(2)]
    response = client.post("/images/batch", files=files, data={"id": ["b0", "b1"]})
    assert response.status_code == 201, response.text
    assert [thumbnail_of(client, i).size for i in ("b0", "b1")] == [(80, 160)] * 2


def test_thumbnails_off_keeps_none(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", thumbnails=False))) as client:
        upload(client, encode(make_photo(6), "PNG"), "p")
        response = client.get("/images/p/thumbnail")
        assert response.status_code == 404
        assert "has no thumbnail" in response.json()["detail"]


@pytest.mark.parametrize("mode", ["CMYK", "I;16", "P", "LA", "1"])
def test_thumbnails_of_every_mode_are_webp(mode: str) -> None:
    image = (
        make_photo(7, (240, 180)).convert(mode) if mode != "I;16" else Image.new("I;16", (240, 180), 30000)
    )
    fmt = "JPEG" if mode == "CMYK" else "TIFF" if mode == "I;16" else "PNG"
    thumbnail = Image.open(io.BytesIO(thumbnail_webp(encode(image, fmt))))
    assert thumbnail.format == "WEBP" and thumbnail.size == (160, 120)
