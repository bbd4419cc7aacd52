"""The JSON response of every answer, errors included."""

from typing import Any

from fastapi.responses import JSONResponse


class JSONLine(JSONResponse):
    """JSON ending with a newline, so that the shell prompt after `curl` starts on its own line."""

    def render(self, content: Any) -> bytes:
        return super().render(content) + b"\n"
