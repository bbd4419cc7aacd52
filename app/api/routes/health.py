"""/health: liveness and the number of indexed images."""

from fastapi import APIRouter

from app.api.deps import ServiceDep
from app.api.schemas import HealthOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut)
async def health(service: ServiceDep) -> HealthOut:
    """`ok` and the number of images in the index."""
    return HealthOut(status="ok", images=service.count())  # no lock, no I/O: answered on the event loop
