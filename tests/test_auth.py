"""DOPPEL_API_KEY: every endpoint but /health (and the API's description) needs the key."""

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from helpers import encode, make_photo
from pydantic import SecretStr, ValidationError
from starlette.types import Message, Scope

from app import cli
from app.config import Settings
from app.factory import create_app

KEY = "k3y-0123456789abcdef-XYZ"
SECRET_KEY = SecretStr(KEY)
PHOTO = encode(make_photo(1, (64, 48)))


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=tmp_path, api_key=SECRET_KEY))) as client:
        yield client


def operations(client: TestClient) -> list[tuple[str, str]]:
    """Every (method, path) of the schema, with `x` for the path's id."""
    paths = client.get("/openapi.json").json()["paths"]
    return [
        (method.upper(), path.replace("{image_id}", "x")) for path, ops in paths.items() for method in ops
    ]


def test_every_operation_but_health_needs_the_key(keyed: TestClient) -> None:
    refused = []
    for method, path in operations(keyed):
        response = keyed.request(method, path)
        if path.startswith("/health"):
            assert response.status_code == 200, path
            continue
        assert response.status_code == 401, (method, path)
        assert response.json() == {
            "detail": "an API key is required: send Authorization: Bearer KEY or X-API-Key: KEY"
        }
        assert response.headers["www-authenticate"] == "Bearer"
        refused.append(path)
    assert len(refused) == 12  # every operation of the schema but the three under /health
    assert keyed.get("/nowhere").status_code == 401  # no probing for routes without the key


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer {KEY}"},
        {"Authorization": f"Bearer   {KEY} "},
        {"X-API-Key": KEY},
        {"X-API-Key": "wrong", "Authorization": f"Bearer {KEY}"},
    ],
)
def test_the_key_opens_every_operation(keyed: TestClient, headers: dict[str, str]) -> None:
    created = keyed.post("/images", files={"file": ("f", PHOTO)}, data={"id": "a"}, headers=headers)
    assert created.status_code == 201
    assert keyed.get("/images/a", headers=headers).status_code == 200
    assert keyed.get("/images", headers=headers).json()["items"][0]["id"] == "a"
    assert (
        keyed.post("/search", files={"file": ("f", PHOTO)}, headers=headers).json()["matches"][0]["id"] == "a"
    )
    assert keyed.delete("/images/a", headers=headers).status_code == 204


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Bearer {KEY.lower()}"},
        {"Authorization": "Bearer "},
        {"X-API-Key": ""},
        {"X-API-Key": f"Bearer {KEY}"},
    ],
)
def test_a_wrong_key_is_refused_and_nothing_is_stored(keyed: TestClient, headers: dict[str, str]) -> None:
    response = keyed.post("/images", files={"file": ("f", PHOTO)}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "the API key is wrong"}
    assert response.headers["www-authenticate"] == "Bearer"
    assert keyed.get("/health").json()["images"] == 0


@pytest.mark.parametrize("headers", [{}, {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY}])
def test_no_key_offered(keyed: TestClient, headers: dict[str, str]) -> None:
    response = keyed.get("/images", headers=headers)
    assert response.status_code == 401
    assert "API key is required" in response.json()["detail"]


def test_a_request_without_the_key_is_refused_before_its_body_is_read(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, api_key=SECRET_KEY))
    sent: list[Message] = []

    async def receive() -> Message:
        raise AssertionError("the body was read")

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "method": "POST",
        "path": "/images",
        "raw_path": b"/images",
        "query_string": b"",
        "headers": [(b"content-type", b"multipart/form-data; boundary=B"), (b"content-length", b"1000000")],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 1234),
        "root_path": "",
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 401


def test_docs_stay_open_and_the_schema_names_the_key(keyed: TestClient) -> None:
    assert keyed.get("/docs").status_code == 200
    schema = keyed.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    for path, ops in schema["paths"].items():
        for op in ops.values():
            if path.startswith("/health"):
                assert "security" not in op and "401" not in op["responses"]
            else:
                assert op["security"] == [{"bearer": []}, {"apiKey": []}]
                assert "401" in op["responses"]


def test_without_a_key_everything_is_open(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "securitySchemes" not in schema.get("components", {})
    assert client.post("/images", files={"file": ("f", PHOTO)}).status_code == 201
    assert client.get("/images").status_code == 200


def test_an_empty_key_in_the_environment_means_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOPPEL_API_KEY", "")
    assert Settings().api_key is None


@pytest.mark.parametrize(
    "bad", ["short-key", "a key with spaces in it", "ключ-ключ-ключ-ключ", "tab\tinside-0123456789"]
)
def test_a_bad_key_is_refused_at_start_without_being_echoed(
    bad: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOPPEL_API_KEY", bad)
    with pytest.raises(ValidationError) as error:
        Settings()
    assert bad not in str(error.value)


def test_the_key_is_masked_when_settings_are_printed() -> None:
    settings = Settings(api_key=SECRET_KEY)
    assert KEY not in repr(settings) and KEY not in str(settings.model_dump())
    assert settings.api_key is not None and settings.api_key.get_secret_value() == KEY


@pytest.mark.parametrize(
    ("host", "api_key", "warned"),
    [
        ("0.0.0.0", None, True),
        ("doppel.example", None, True),
        ("0.0.0.0", SECRET_KEY, False),
        ("127.0.0.1", None, False),
        ("::1", None, False),
        ("localhost", None, False),
    ],
)
def test_serving_beyond_this_machine_without_a_key_warns(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    host: str,
    api_key: SecretStr | None,
    warned: bool,
) -> None:
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    with caplog.at_level(logging.WARNING, logger="doppel"):
        assert cli.serve(Settings(host=host, api_key=api_key)) == 0
    assert ("DOPPEL_API_KEY is not set" in caplog.text) == warned
