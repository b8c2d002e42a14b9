"""Administrators' routes: `/api/v1/admin/`, always within the caller's tenant.

A user, a task or a tenant outside that tenant answers 404, as one that does
not exist, so an administrator learns nothing about other tenants.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any, Literal

from aiokafka.errors import KafkaError
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from tm_adapters.consumer_lag import consumer_lag
from tm_domain import storage
from tm_domain.errors import NotFound
from tm_service import responses, schemas
from tm_service.auth import Admin
from tm_service.routes import health
from tm_service.routes.privacy import service_of

router = APIRouter(prefix="/api/v1/admin", tags=["administrators"])

_REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.Failure, "description": "Invalid input"},
    401: {"model": schemas.Failure, "description": "No valid token or API key"},
    403: {"model": schemas.Failure, "description": "Not an administrator"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Failure, "description": "Nothing of this id in the tenant"},
}
Data = schemas.Success[dict[str, Any]]

UserId = Annotated[
    str, Path(pattern=r"^[A-Za-z0-9._:@|-]{1,128}$", description="the user's id")
]
DryRun = Annotated[
    bool, Query(alias="dryRun", description="report what would happen, change nothing")
]


@router.get(
    "/users/{user_id}/export",
    response_model=Data,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Everything stored about a user of the tenant, in the export format",
)
async def export_user(admin: Admin, user_id: UserId, request: Request) -> Response:
    user = storage.User(admin.tenant_id, user_id)
    document = await service_of(request).export(
        user,
        actor=admin.actor,
        request_id=responses.request_id(request),
        must_exist=True,
    )
    return responses.ok(request, document)


@router.delete(
    "/users/{user_id}/data",
    response_model=Data,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Erase a user's data: gone from every view now, purged later",
)
async def erase_user(
    admin: Admin, user_id: UserId, request: Request, dry_run: DryRun = False
) -> Response:
    summary = await service_of(request).erase(
        storage.User(admin.tenant_id, user_id),
        actor=admin.actor,
        request_id=responses.request_id(request),
        dry_run=dry_run,
        must_exist=True,
    )
    return responses.ok(request, summary)


@router.post(
    "/data/purge",
    response_model=Data,
    responses=_REFUSED,
    summary="Remove the tenant's data deleted longer ago than the retention window",
)
async def purge(
    admin: Admin,
    request: Request,
    dry_run: DryRun = False,
    limit: Annotated[int, Query(ge=1, le=10_000, description="tasks per call")] = 500,
) -> Response:
    service = service_of(request)
    purged = await service.purge(
        tenant_id=admin.tenant_id,
        actor=admin.actor,
        request_id=responses.request_id(request),
        dry_run=dry_run,
        limit=limit,
    )
    return responses.ok(
        request,
        {
            **purged.to_dict(),
            "dryRun": dry_run,
            "retentionDays": await service.retention_of(admin.tenant_id),
        },
    )


@router.get(
    "/reminders",
    response_model=schemas.Success[list[dict[str, Any]]],
    responses=_REFUSED,
    summary="The tenant's reminders of undeleted tasks, by status and user",
)
async def list_reminders(
    admin: Admin,
    request: Request,
    status: Literal["pending", "sent", "failed", "cancelled"] | None = None,
    user: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9._:@|-]{1,128}$")] = None,
) -> Response:
    rows = await service_of(request).reminder_rows(
        admin.tenant_id,
        user_id=user,
        status=status,
        limit=request.app.state.settings.admin_list_max,
    )
    return responses.ok(request, rows)


@router.post(
    "/reminders/{task_id}/retry",
    response_model=Data,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Send a failed reminder again, now",
)
async def retry_reminder(admin: Admin, task_id: str, request: Request) -> Response:
    task = await service_of(request).retry_reminder(
        admin.tenant_id,
        task_id,
        actor=admin.actor,
        request_id=responses.request_id(request),
    )
    reminder = schemas.reminder_public(task.get("reminder"))
    return responses.ok(
        request,
        {
            "taskId": task["_id"],
            "userId": task["userId"],
            "reminder": None if reminder is None else reminder.model_dump(mode="json"),
        },
    )


@router.get(
    "/tenants",
    response_model=schemas.Success[list[dict[str, Any]]],
    responses=_REFUSED,
    summary="The tenants this caller administers, with what the store holds",
)
async def list_tenants(admin: Admin, request: Request) -> Response:
    return responses.ok(request, [await _tenant(request, admin.tenant_id)])


@router.get(
    "/tenants/{tenant_id}",
    response_model=Data,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="One tenant this caller administers",
)
async def show_tenant(admin: Admin, tenant_id: str, request: Request) -> Response:
    if tenant_id != admin.tenant_id:
        raise NotFound(tenant_id, message="no such tenant for this caller")
    return responses.ok(request, await _tenant(request, tenant_id))


async def _tenant(request: Request, tenant_id: str) -> dict[str, Any]:
    service = service_of(request)
    found = await service.store.tenant_counts(tenant_id)
    counts = (
        found[0]
        if found
        else {
            "tenantId": tenant_id,
            "users": 0,
            "tasks": 0,
            "deletedTasks": 0,
            "erasuresAwaitingPurge": 0,
        }
    )

    registered = (
        None if service.tenants is None else await service.tenants.get(tenant_id)
    )
    return {
        **counts,
        "retentionDays": await service.retention_of(tenant_id),
        "registration": None
        if registered is None
        else {
            "displayName": registered.display_name,
            "active": registered.active,
            "quotas": {
                "apiCallsPerMinute": registered.quotas.api_calls_per_minute,
                "tasksPerHour": registered.quotas.tasks_per_hour,
                "tasksPerDay": registered.quotas.tasks_per_day,
            },
        },
        "source": (
            "users and tasks from the time service's store; the registration "
            "(null for a tenant without a TimeServiceTenant) from the operator's"
        ),
    }


@router.get(
    "/status",
    response_model=Data,
    responses=_REFUSED,
    summary="Whether MongoDB, Kafka and Redis answer, and how far the worker lags",
)
async def status(admin: Admin, request: Request) -> Response:
    settings = request.app.state.settings
    checks: dict[str, health.Check] = request.app.state.readiness
    names = list(checks)
    outcomes = await asyncio.gather(
        *(
            health.probe(checks[name], seconds=settings.readiness_timeout_ms / 1000)
            for name in names
        )
    )
    components = {
        name: {"state": "down", "detail": why} if why else {"state": "up"}
        for name, why in zip(names, outcomes, strict=True)
    }

    # The worker's lag, seen from its effect: deliveries still scheduled well
    # after they fell due.
    service = service_of(request)
    now = service.clock()
    grace = timedelta(seconds=settings.status_overdue_grace_s)
    try:
        count, earliest = await service.store.overdue(before=now - grace)
        worker: dict[str, Any] = {
            "overdueDeliveries": count,
            "oldestOverdueSeconds": (
                None if earliest is None else round((now - earliest).total_seconds())
            ),
            "graceSeconds": settings.status_overdue_grace_s,
        }
    except storage.StoreUnavailable:
        worker = {"overdueDeliveries": None, "detail": "MongoDB unavailable"}

    # And from its input: the task events its consumer group has not read,
    # where there is a Kafka at all (not in the single-process mode).
    if "kafka" in checks:
        worker["consumerLag"] = await _consumer_lag(settings)

    return responses.ok(
        request,
        {
            "api": {"state": "up"},
            **components,
            "worker": worker,
            "ready": all(c["state"] == "up" for c in components.values()),
        },
    )


async def _consumer_lag(settings: Any) -> dict[str, Any]:
    try:
        lag = await consumer_lag(
            settings, timeout_s=settings.readiness_timeout_ms / 1000
        )
    except (TimeoutError, KafkaError) as exc:
        return {"total": None, "detail": type(exc).__name__}

    return {
        "group": lag.group,
        "topic": lag.topic,
        "total": lag.total,
        "partitions": {str(p): n for p, n in sorted(lag.partitions.items())},
    }
