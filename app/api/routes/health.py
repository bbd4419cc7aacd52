"""/health: liveness and the number of indexed images."""

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServiceDep
from app.api.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
async def health(service: ServiceDep) -> HealthOut:
    """`ok` and the number of images in the index."""
    return HealthOut(status="ok", images=await run_in_threadpool(service.count))
