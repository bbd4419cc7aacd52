"""Composition root: builds the FastAPI app and, in its lifespan, the store, index and service."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from threadpoolctl import threadpool_limits
from uvicorn.logging import DefaultFormatter

from app.api.auth import ApiKeyGuard, document_api_key
from app.api.connections import BodyRate, RefusedAcceptLog
from app.api.errors import register_exception_handlers
from app.api.metrics import RequestMetrics
from app.api.responses import JSONLine
from app.api.routes import batch, duplicates, health, images, metrics, page, search
from app.api.uploads import FORM_OVERHEAD_BYTES, BodySizeLimit
from app.config import Settings
from app.service import DoppelService, build_service
from app.service.memory import return_freed_memory

DESCRIPTION = (
    "Duplicate-image detection. Each image gets a 64-bit difference hash (dHash) and two more hashes; "
    "a stored image whose dHash is within `max_distance` bits (default 10) is a candidate, and a match "
    "when its score, the mean of the three hash distances, is at most DOPPEL_MAX_SCORE (10)."
)
# The API docs, served with their scripts and styles from the fastapi-offline package (no CDN).
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
DOCS_ASSETS_URL = "/docs-assets"


def create_app(settings: Settings | None = None, service: DoppelService | None = None) -> FastAPI:
    """The Doppel ASGI app. Its lifespan starts `service` (built from the settings if not given:
    then nothing is opened until the app starts) and closes it."""
    settings = settings or Settings()
    log_like_uvicorn(settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Request threads already use the cores; OpenBLAS's threads under the resize of
        # app/imaging/resample.py would oversubscribe them, and they spin while they wait (with them,
        # Doppel served small images at 0.65x the rate of the naive service). The limit is
        # process-wide; faiss's OpenMP limit is per thread, so app/index.py sets it on each call.
        blas_threads = threadpool_limits(1, user_api="blas")
        return_freed_memory()
        asyncio.get_running_loop().set_exception_handler(RefusedAcceptLog())
        started = service or build_service(settings)
        try:
            started.start()
            app.state.service = started
            yield
        finally:
            started.close()
            blas_threads.restore_original_limits()

    app = FastAPIOffline(
        title="Doppel",
        summary="Have we seen this picture before?",
        description=DESCRIPTION,
        version="1.0.0",
        lifespan=lifespan,
        default_response_class=JSONLine,
        docs_url=DOCS_URL,
        redoc_url=REDOC_URL,
        static_url=DOCS_ASSETS_URL,
        # No badge fetched from swagger.io's online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
    app.state.settings = settings
    register_exception_handlers(app)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        path_limits={"/images/batch": settings.max_batch_bytes},
    )
    app.add_middleware(BodyRate, min_rate=settings.body_min_rate, timeout_s=settings.body_timeout_s)
    if settings.api_key is not None:
        # Open without the key: liveness probes, the API's description and the page (no data
        # behind them; the page asks for the key and sends it with its calls).
        docs = (app.openapi_url, DOCS_URL, app.swagger_ui_oauth2_redirect_url, REDOC_URL)
        open_paths = {"/", "/health", "/health/live", "/health/ready"} | {path for path in docs if path}
        if settings.metrics_public:
            open_paths.add("/metrics")
        # Added after the others, so it runs before them: a request without the key is refused
        # before its body is read.
        app.add_middleware(
            ApiKeyGuard,
            api_key=settings.api_key.get_secret_value(),
            open_paths=open_paths,
            open_folders=[DOCS_ASSETS_URL],
        )
        document_api_key(app, open_paths)
    # Last, so it runs first: it counts the requests the others refuse too.
    app.add_middleware(RequestMetrics)
    app.include_router(batch.router)  # before images.router, whose /images/{image_id} paths are broader
    app.include_router(images.router)
    app.include_router(search.router)
    app.include_router(duplicates.router)
    app.include_router(page.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    return app


def log_like_uvicorn(level: str) -> None:
    """Send Doppel's own log lines (store opened, index loaded, sync trouble) where uvicorn's go,
    in its format, at the configured level."""
    logger = logging.getLogger("doppel")
    logger.setLevel(logging.DEBUG if level == "trace" else level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
        logger.addHandler(handler)
    # A body that is not well-formed multipart is answered 400; the parser's own warning about it
    # would reach the log as a bare line, through logging's last resort.
    logging.getLogger("python_multipart").setLevel(logging.ERROR)
