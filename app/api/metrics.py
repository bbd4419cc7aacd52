"""The middleware that counts and times every HTTP request for GET /metrics."""

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.service import DoppelService

# The route label of requests no route answered (404s, the API docs' static files) or refused before
# routing (401, 413 from the headers).
UNROUTED = "other"


class RequestMetrics:
    """ASGI middleware counting and timing each HTTP request by method, route and status. The route
    is the template the router matched (`/images/{image_id}`), never the path: every id would make
    series of its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before it answers

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            service: DoppelService | None = getattr(scope["app"].state, "service", None)
            if service is not None:  # None: an app called without its lifespan has nothing to count into
                self._count(service, scope, status, time.perf_counter() - started)

    @staticmethod
    def _count(service: DoppelService, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", UNROUTED)  # set by the router when one matched
        method = scope["method"]
        service.metrics.requests.labels(method, route, str(status)).inc()
        service.metrics.request_seconds.labels(method, route).observe(seconds)
