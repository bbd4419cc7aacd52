"""/health: liveness, readiness and the number of indexed images, for GET and for probes that
send HEAD. Answered on the event loop: no lock, no I/O."""

from fastapi import APIRouter

from app.api.deps import ServiceDep, SettingsDep
from app.api.responses import JSONLine
from app.api.schemas import HealthOut, ReadyOut

router = APIRouter(prefix="/health", tags=["health"])


@router.head("", include_in_schema=False)
@router.get("", response_model=HealthOut)
async def health(service: ServiceDep) -> HealthOut:
    """`ok` and the number of images in this replica's index."""
    return HealthOut(status="ok", images=service.count())


@router.head("/live", include_in_schema=False)
@router.get("/live", response_model=HealthOut)
async def live(service: ServiceDep) -> HealthOut:
    """The process runs (200 as long as it answers): for restarts, not for routing."""
    return HealthOut(status="ok", images=service.count())


@router.head("/ready", include_in_schema=False)
@router.get(
    "/ready",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "The index is not loaded, or lags the store."}},
)
async def ready(service: ServiceDep, settings: SettingsDep) -> JSONLine:
    """Whether this replica should get traffic: 503 until its index is loaded, and while it lags
    the store by more than DOPPEL_MAX_LAG_MS (the store is away, or the index cannot keep up)."""
    status = service.syncer.status()
    is_ready = status.lag_ms is not None and status.lag_ms <= settings.max_lag_ms
    body = ReadyOut(
        status="ready" if is_ready else "not ready",
        images=service.count(),
        position=status.position,
        lag_ms=None if status.lag_ms is None else round(status.lag_ms),
        max_lag_ms=settings.max_lag_ms,
    )
    return JSONLine(body.model_dump(), status_code=200 if is_ready else 503)
