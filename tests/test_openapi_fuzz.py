"""Schemathesis against the app's own OpenAPI schema: no server error, no response the schema
does not allow, with and without DOPPEL_API_KEY. Hypothesis runs derandomized and bounded."""

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from helpers import encode, make_photo
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from app.config import Settings
from app.factory import create_app

KEY = "fuzz-key-0123456789abcdef"
# Module level because schemathesis builds its tests at collection time; removed after the module.
_DATA = tempfile.TemporaryDirectory(prefix="doppel-fuzz-")
open_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(data_dir=Path(_DATA.name) / "open"))
)
keyed_schema = schemathesis.openapi.from_asgi(
    "/openapi.json", create_app(Settings(data_dir=Path(_DATA.name) / "keyed", api_key=SecretStr(KEY)))
)
Case = schemathesis.Case[Any]  # of any operation of the schema
bounded = settings(
    max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module", autouse=True)
def _remove_data() -> Iterator[None]:
    yield
    _DATA.cleanup()


def excluded_checks(case: Case) -> list[schemathesis.CheckFunction]:
    # A schema cannot say "the bytes are a decodable image", so a schema-valid upload is usually
    # refused (415/422); everywhere else, schema-valid requests must be accepted.
    return [positive_data_acceptance] if case.media_type == "multipart/form-data" else []


@open_schema.parametrize()
@bounded
def test_open_api_conforms_to_its_schema(case: Case) -> None:
    case.call_and_validate(excluded_checks=excluded_checks(case))


@keyed_schema.parametrize()
@bounded
def test_keyed_api_conforms_to_its_schema(case: Case) -> None:
    # Among the checks: a request without the key that is not refused with 401 fails (ignored_auth).
    # The key sent here replaces any malformed Authorization header the case was generated with, so
    # such a case is no longer negative and must not be expected to be rejected.
    case.call_and_validate(
        headers={"Authorization": f"Bearer {KEY}"},
        excluded_checks=[*excluded_checks(case), negative_data_rejection],
    )


def test_successful_responses_conform_to_the_schema() -> None:
    """Random bytes are never an image, so the fuzzing above rarely stores one: walk the happy path."""
    photo = encode(make_photo(1, (64, 48)))
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("/images", "POST", {"body": {"file": photo, "id": "a", "metadata": '{"k": [1, "x"]}'}}),
        ("/images/{image_id}", "PUT", {"path_parameters": {"image_id": "a"}, "body": {"file": photo}}),
        ("/images/{image_id}", "PUT", {"path_parameters": {"image_id": "b"}, "body": {"file": photo}}),
        ("/images/{image_id}", "GET", {"path_parameters": {"image_id": "a"}}),
        ("/images", "GET", {"query": {"limit": 1}}),
        ("/images/{image_id}/duplicates", "GET", {"path_parameters": {"image_id": "a"}}),
        ("/search", "POST", {"body": {"file": photo}}),
        ("/search", "GET", {"query": {"hash": "0123456789abcdef"}}),
        ("/images/{image_id}", "DELETE", {"path_parameters": {"image_id": "a"}}),
        ("/health", "GET", {}),
    ]
    statuses = []
    for path, method, parts in calls:
        case = open_schema[path][method].Case(
            media_type="multipart/form-data" if "body" in parts else None, **parts
        )
        statuses.append(case.call_and_validate().status_code)
    assert statuses == [201, 200, 201, 200, 200, 200, 200, 200, 204, 200]
