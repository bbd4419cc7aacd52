"""API key check (DOPPEL_API_KEY) and its description in the OpenAPI schema.

The check is ASGI middleware, not a FastAPI dependency: FastAPI reads and parses a request's body
before it runs the dependencies, so a dependency would take in a whole upload before refusing it.
"""

import hashlib
import hmac
from collections.abc import Callable, Collection
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.errors import ERROR_MEANING
from app.api.responses import JSONLine
from app.api.schemas import ErrorOut

_HOW_TO_SEND = "send Authorization: Bearer KEY or X-API-Key: KEY"
_SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer DOPPEL_API_KEY"},
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "X-API-Key: DOPPEL_API_KEY",
    },
}


class ApiKeyGuard:
    """ASGI middleware answering 401 to HTTP requests without the key, before reading their body.

    The key is accepted as `Authorization: Bearer KEY` or `X-API-Key: KEY`. Paths in `open_paths`,
    and those under `open_folders`, need no key.
    """

    def __init__(
        self, app: ASGIApp, api_key: str, open_paths: Collection[str], open_folders: Collection[str] = ()
    ) -> None:
        self.app = app
        # Digests are compared, so the comparison takes the same time whatever the length sent.
        self._digest = _digest(api_key.encode("ascii"))
        self.open_paths = frozenset(open_paths)
        self.open_prefixes = tuple(f"{folder.rstrip('/')}/" for folder in open_folders)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.open_paths or path.startswith(self.open_prefixes):
            await self.app(scope, receive, send)
            return
        offered = _offered_keys(scope["headers"])
        # Every offered key is compared, so the time taken does not tell which header was right.
        matches = [hmac.compare_digest(_digest(key), self._digest) for key in offered]
        if any(matches):
            await self.app(scope, receive, send)
            return
        detail = "the API key is wrong" if offered else f"an API key is required: {_HOW_TO_SEND}"
        response = JSONLine({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


def _offered_keys(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The keys a request offers: Bearer credentials and X-API-Key values."""
    keys = []
    for name, value in headers:
        if name == b"x-api-key":
            keys.append(value.strip())
        elif name == b"authorization":
            scheme, _, credentials = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                keys.append(credentials.strip())
    return keys


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def document_api_key(app: FastAPI, open_paths: Collection[str]) -> None:
    """Make the app's OpenAPI schema name the key as the security of every operation but `open_paths`."""
    build_schema: Callable[[], dict[str, Any]] = app.openapi
    unauthorized = {
        "description": ERROR_MEANING[401],
        "content": {"application/json": {"schema": ErrorOut.model_json_schema()}},
    }

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = build_schema()  # also caches it in app.openapi_schema
            schema.setdefault("components", {})["securitySchemes"] = _SECURITY_SCHEMES
            for path, operations in schema["paths"].items():
                if path in open_paths:
                    continue
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
                    operation["responses"]["401"] = unauthorized
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema
