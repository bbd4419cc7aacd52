"""The store is the system of record: a new app on the same data folder sees the same images."""

from fastapi.testclient import TestClient
from helpers import as_stored, encode, make_photo, search, upload

from app.config import Settings
from app.factory import create_app


def test_images_survive_a_restart(settings: Settings) -> None:
    photos = {f"p{n}": make_photo(n) for n in range(5)}
    with TestClient(create_app(settings)) as first:
        created = {k: upload(first, encode(p), k, f'{{"n": "{k}"}}').json() for k, p in photos.items()}
    with TestClient(create_app(settings)) as second:
        assert second.get("/health").json()["images"] == 5
        for image_id, photo in photos.items():
            record = second.get(f"/images/{image_id}").json()
            assert record == as_stored(created[image_id])
            matches = search(second, encode(photo, "JPEG", quality=80)).json()["matches"]
            assert [m["id"] for m in matches] == [image_id]


def test_deleted_images_stay_deleted_after_a_restart(settings: Settings) -> None:
    photo = make_photo(1)
    with TestClient(create_app(settings)) as first:
        upload(first, encode(photo), "gone")
        upload(first, encode(make_photo(2)), "kept")
        assert first.delete("/images/gone").status_code == 204
    with TestClient(create_app(settings)) as second:
        assert second.get("/images/gone").status_code == 404
        assert search(second, encode(photo)).json()["matches"] == []
        assert second.get("/health").json()["images"] == 1
        # the id is free again, and the new image is found under it
        assert upload(second, encode(make_photo(3)), "gone").status_code == 201
        assert [m["id"] for m in search(second, encode(make_photo(3))).json()["matches"]] == ["gone"]


def test_replaced_images_are_found_by_their_new_picture_after_a_restart(settings: Settings) -> None:
    old, new = make_photo(1), make_photo(2)
    with TestClient(create_app(settings)) as first:
        first.put("/images/x", files={"file": ("x", encode(old))})
        first.put("/images/x", files={"file": ("x", encode(new))})
    with TestClient(create_app(settings)) as second:
        assert search(second, encode(old)).json()["matches"] == []
        assert [m["id"] for m in search(second, encode(new)).json()["matches"]] == ["x"]


def test_data_folder_is_created_with_a_sqlite_file(sqlite_settings: Settings) -> None:
    settings = sqlite_settings
    with TestClient(create_app(settings)) as client:
        upload(client, encode(make_photo(1)))
    assert settings.database_path is not None and settings.database_path.is_file()
    assert settings.database_path.read_bytes()[:16] == b"SQLite format 3\x00"
