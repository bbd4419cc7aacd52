"""/duplicates: every group of duplicates among the stored images."""

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServiceDep
from app.api.errors import error_responses
from app.api.params import AllOrientations, Confirm, MaxDistance
from app.api.schemas import GroupsOut
from app.service.duplicates import GroupOptions

router = APIRouter(prefix="/duplicates", tags=["duplicates"])


@router.get("", response_model=GroupsOut, responses=error_responses(422))
async def duplicate_groups(
    service: ServiceDep,
    max_distance: MaxDistance = None,
    confirm: Confirm = True,
    all_orientations: AllOrientations = False,
    min_size: Annotated[int, Query(ge=2, description="Only groups of at least this many images.")] = 2,
    limit: Annotated[int, Query(ge=1, le=1000, description="Groups per page.")] = 100,
    after: Annotated[
        str | None, Query(max_length=256, description="The `next` cursor of the previous page.")
    ] = None,
) -> GroupsOut:
    """Groups of images connected by matching pairs (as `/search` matches), with their pairs, in the
    order of their first id. Up to DOPPEL_MAX_DISTANCE without orientations they are read from
    memory; other parameters are computed on demand for stores of up to 10,000 images (else 422)."""
    options = GroupOptions(
        max_distance=max_distance,
        confirm=confirm,
        all_orientations=all_orientations,
        min_size=min_size,
        limit=limit,
        after=after,
    )
    return GroupsOut.of(await run_in_threadpool(service.duplicates.groups, options))
