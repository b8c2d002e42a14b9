"""The visitor's analytics: `/api/v1/visitor/time/analytics`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from tm_domain import analytics
from tm_service import responses, schemas
from tm_service.auth import CurrentUser
from tm_service.routes.tasks import Tasks, query_date

router = APIRouter(prefix="/api/v1/visitor/time", tags=["visitor analytics"])


@router.get(
    "/analytics",
    response_model=schemas.Success[dict[str, Any]],
    responses={
        400: {"model": schemas.Failure, "description": "Invalid input"},
        401: {"model": schemas.Failure, "description": "No valid bearer token"},
    },
    summary="What the tasks of a range of days add up to",
    description=(
        "Counts by day, priority, part of day and category; completion, and "
        "completion on the planned day; reminder deliveries by outcome; and "
        "the lateness of those sent. At most "
        f"{analytics.RANGE_MAX_DAYS} days; `complete` is false when the range "
        "holds more tasks than a view returns, and the figures cover the first."
    ),
)
async def task_analytics(
    user: CurrentUser,
    service: Tasks,
    request: Request,
    first: Annotated[str, Query(alias="from", description="YYYY-MM-DD")],
    last: Annotated[str, Query(alias="to", description="YYYY-MM-DD")],
) -> Response:
    figures = await service.analytics(
        user, query_date("from", first), query_date("to", last)
    )
    return responses.ok(request, figures)
