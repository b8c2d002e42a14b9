"""The caller's own data: `/api/v1/visitor/data`, its export and its erasure."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from tm_domain import storage
from tm_domain.privacy import Actor
from tm_service import responses, schemas
from tm_service.auth import CurrentIdentity
from tm_service.privacy import PrivacyService

router = APIRouter(prefix="/api/v1/visitor/data", tags=["visitor data"])

_REFUSED: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.Failure, "description": "No valid bearer token"},
}


def service_of(request: Request) -> PrivacyService:
    service: PrivacyService | None = request.app.state.privacy
    if service is None:
        raise storage.StoreUnavailable("no privacy store is configured")
    return service


@router.get(
    "/export",
    response_model=schemas.Success[dict[str, Any]],
    responses=_REFUSED,
    summary="Everything stored about the caller, in the export format",
)
async def export_own_data(caller: CurrentIdentity, request: Request) -> Response:
    actor = Actor(id=caller.user.user_id, role=caller.role, via="token")
    document = await service_of(request).export(
        caller.user, actor=actor, request_id=responses.request_id(request)
    )
    return responses.ok(request, document)


@router.delete(
    "",
    response_model=schemas.Success[dict[str, Any]],
    responses=_REFUSED,
    summary="Erase the caller's data: gone from every view now, purged later",
)
async def erase_own_data(caller: CurrentIdentity, request: Request) -> Response:
    actor = Actor(id=caller.user.user_id, role=caller.role, via="token")
    summary = await service_of(request).erase(
        caller.user, actor=actor, request_id=responses.request_id(request)
    )
    return responses.ok(request, summary)
