"""Connections that cannot hold the server: idle, slow-header and slow-body clients are closed,
connections past a cap are refused at once, and refusals are logged once per interval.

uvicorn closes a kept-alive connection after `timeout_keep_alive` but has no deadline for a
connection that sends nothing, a request head that never completes, or a body sent at 1 byte/s.
"""

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import h11
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("doppel")

REFUSAL_LOG_INTERVAL_S = 10.0


class Throttle:
    """Counts events, and lets one in each `interval_s` through to be logged with the count."""

    def __init__(self, interval_s: float = REFUSAL_LOG_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._last_passed = -interval_s
        self._counted = 0

    def count(self) -> int:
        """Count one event: the events since the last one let through if this one is, else 0."""
        self._counted += 1
        now = time.monotonic()
        if now - self._last_passed < self.interval_s:
            return 0
        counted, self._counted, self._last_passed = self._counted, 0, now
        return counted


def _raw_response(status: int, reason: str, detail: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 response with a JSON body and Connection: close, written without h11 (whose
    state machine does not answer before a request has come)."""
    body = json.dumps({"detail": detail}).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a connection cap and deadlines for what it does not time out:
    a new connection that sends nothing is closed after the keep-alive time, like one between
    requests, and a request head must be complete `header_timeout_s` after the connection opens or
    the previous response ends (else 408, closed). Build it with `configured`."""

    header_timeout_s: ClassVar[float]
    max_connections: ClassVar[int]
    busy_response: ClassVar[bytes]
    refusals: ClassVar[Throttle]

    @classmethod
    def configured(cls, *, header_timeout_s: float, max_connections: int) -> type[H11Protocol]:
        busy = _raw_response(
            503, "Service Unavailable", "too many connections; retry shortly", "retry-after: 1\r\n"
        )
        attributes = {
            "header_timeout_s": header_timeout_s,
            "max_connections": max_connections,
            "busy_response": busy,
            "refusals": Throttle(),
        }
        return type(cls.__name__, (cls,), attributes)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if len(self.connections) > self.max_connections:
            # Closed at once, not held: the file descriptors of held connections run out.
            self.transport.write(self.busy_response)
            self.transport.close()
            if refused := self.refusals.count():
                logger.warning(
                    "%d connections refused since the last such line: DOPPEL_MAX_CONNECTIONS=%d are open",
                    refused,
                    self.max_connections,
                )
            return
        idle = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)
        self.timeout_keep_alive_task = idle
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # the head has come
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        detail = f"the request head did not come within {self.header_timeout_s:g} s"
        self.transport.write(_raw_response(408, "Request Timeout", detail))
        self.transport.close()


class BodyRate:
    """ASGI middleware answering 408 (and closing the connection) when a request body comes slower
    than `min_rate` bytes a second, once `timeout_s` of waiting has been allowed for it.

    Only the time spent waiting for the client counts, not the time the app takes between reads.
    """

    def __init__(self, app: ASGIApp, *, min_rate: int, timeout_s: float) -> None:
        self.app = app
        self.min_rate = min_rate
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        waited, received, complete = 0.0, 0, False

        async def timed_receive() -> Message:
            nonlocal waited, received, complete
            if complete:  # later reads wait for the client to leave, which may take any time
                return await receive()
            allowed = self.timeout_s + received / self.min_rate - waited
            started = time.monotonic()
            try:
                message = await asyncio.wait_for(receive(), max(allowed, 0.0))
            except TimeoutError:
                detail = (
                    f"the request body came slower than {self.min_rate} bytes a second "
                    f"(after {self.timeout_s:g} s)"
                )
                # An HTTPException passes through the form parser to the JSON error handler.
                raise HTTPException(status_code=408, detail=detail, headers={"Connection": "close"}) from None
            finally:
                waited += time.monotonic() - started
            received += len(message.get("body", b""))
            complete = not message.get("more_body", False)
            return message

        await self.app(scope, timed_receive, send)


class RefusedAcceptLog:
    """An event-loop exception handler that logs a failing accept (out of file descriptors) in one
    line per interval, with the count since, instead of a traceback per attempt (asyncio retries
    each accept of its backlog: megabytes a second). Everything else goes to the default."""

    def __init__(self) -> None:
        self._failures = Throttle()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: Mapping[str, Any]) -> None:
        if context.get("message") != "socket.accept() out of system resource":
            loop.default_exception_handler(dict(context))
            return
        if failed := self._failures.count():
            logger.error(
                "cannot accept connections: %s (%d failed accepts since the last such line; "
                "lower DOPPEL_MAX_CONNECTIONS or raise the open-file limit)",
                context.get("exception"),
                failed,
            )
