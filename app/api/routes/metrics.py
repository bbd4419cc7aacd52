"""/metrics: the Prometheus metrics of this process."""

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import ServiceDep

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}},
)
async def metrics(service: ServiceDep) -> Response:
    """Requests and their latency by route and status, hashing time, decode-slot waits, index and
    store sizes, in Prometheus text format. Each process counts its own."""
    # On the thread pool: the store's size is read from it now and then.
    body = await run_in_threadpool(generate_latest, service.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
