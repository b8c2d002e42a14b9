"""`POST /api/v1/visitor/time/tasks/batch`: many task operations at once.

How a batch runs, counts and is replayed is `tm_service.batch`; this route
reads the header and wraps the results in the success envelope.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from starlette.responses import Response

from tm_service import batch, responses, schemas
from tm_service.auth import CurrentUser
from tm_service.routes.tasks import Tasks

router = APIRouter(prefix="/api/v1/visitor/time/tasks", tags=["visitor tasks"])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=(
            "Any unique text (a UUID); a retry with the same key and body gets "
            "the first answer again instead of running the batch twice."
        ),
    ),
]

_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "One result per operation, in order; partial success is normal. "
            "Statuses of results: 200, 201, 400, 403, 404, 409, 503."
        ),
        "headers": {
            "Idempotent-Replayed": {
                "description": "`true` when this is the stored first answer",
                "schema": {"type": "string"},
            }
        },
    },
    409: {
        "model": schemas.Failure,
        "description": "A request with this Idempotency-Key is still running",
    },
    422: {
        "model": schemas.Failure,
        "description": "This Idempotency-Key was used with another body",
    },
}


@router.post(
    "/batch",
    response_model=schemas.Success[schemas.BatchResults],
    responses=_ANSWERS,
    summary="Create, update, complete and delete up to 100 tasks at once",
)
async def run_batch(
    user: CurrentUser,
    service: Tasks,
    body: schemas.BatchRequest,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    guard = getattr(request.app.state, "guard", None)

    async def answer() -> Response:
        results = await batch.run(request, service, guard, user, body.operations)
        return responses.ok(request, results)

    if idempotency_key is None:
        return await answer()
    settings = request.app.state.settings
    return await batch.once(
        request.app.state.idempotency,
        key=f"{{{user.tenant_id}/{user.user_id}}}:{idempotency_key}",
        body=body,
        lock_s=settings.idempotency_lock_s,
        ttl_s=settings.idempotency_ttl_s,
        answer=answer,
    )
