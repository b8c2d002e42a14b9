"""Team owners' routes: `/api/v1/owner/time/`, for tokens of role `owner`.

An owner manages the members of their team and the tasks they assign them;
see `tm_service.teams` for the rules. A task the owner did not assign answers
404, as one that does not exist.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from tm_domain import storage
from tm_domain import tasks as task_rules
from tm_service import responses, schemas
from tm_service.auth import OwnerUser
from tm_service.routes.tasks import month_of, query_date, task_response
from tm_service.teams import TeamService

router = APIRouter(prefix="/api/v1/owner/time", tags=["team owners"])

_REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.Failure, "description": "Invalid input"},
    401: {"model": schemas.Failure, "description": "No valid bearer token"},
    403: {"model": schemas.Failure, "description": "Not a team owner"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Failure, "description": "No such task or member"},
}
Data = schemas.Success[dict[str, Any]]
OneTask = schemas.Success[schemas.TaskPublic]

MemberPath = Annotated[
    str, Path(pattern=schemas.ID_PATTERN, description="the member's user id")
]
MemberFilter = Annotated[
    str | None,
    Query(pattern=schemas.ID_PATTERN, description="one member; all when absent"),
]


def _teams(request: Request) -> TeamService:
    service: TeamService = request.app.state.teams
    return service


async def _view(
    request: Request,
    owner: storage.User,
    dates: task_rules.DateRange,
    member: str | None,
) -> Response:
    found = await _teams(request).view(owner, dates, member=member)
    return responses.ok(
        request,
        {
            "tasks": [
                schemas.task_public(t).model_dump(mode="json") for t in found["tasks"]
            ],
            "progress": found["progress"],
        },
    )


@router.get("/team", response_model=Data, responses=_REFUSED, summary="The team")
async def team(owner: OwnerUser, request: Request) -> Response:
    members = await _teams(request).members(owner)
    return responses.ok(request, {"ownerId": owner.user_id, "members": members})


@router.put(
    "/team/members/{member_id}",
    response_model=Data,
    responses=_REFUSED,
    summary="Add a member of the tenant to the team (201; 200 if already one)",
)
async def add_member(
    owner: OwnerUser, member_id: MemberPath, request: Request
) -> Response:
    added = await _teams(request).add_member(owner, member_id)
    return responses.ok(
        request,
        {"memberId": member_id, "added": added},
        status_code=201 if added else 200,
    )


@router.delete(
    "/team/members/{member_id}",
    response_model=Data,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Remove a member; the tasks assigned to them stay",
)
async def remove_member(
    owner: OwnerUser, member_id: MemberPath, request: Request
) -> Response:
    await _teams(request).remove_member(owner, member_id)
    return responses.ok(request, {"memberId": member_id, "removed": True})


@router.post(
    "/tasks",
    status_code=201,
    response_model=OneTask,
    responses=_REFUSED,
    summary="Assign a new task to a member",
)
async def assign_task(
    owner: OwnerUser, body: schemas.OwnerTaskCreate, request: Request
) -> Response:
    task = await _teams(request).assign(owner, body.assignee_id, body.to_draft())
    return task_response(request, task, status_code=201)


@router.get(
    "/tasks/daily",
    response_model=Data,
    responses=_REFUSED,
    summary="The assigned tasks of one day, and each member's completion",
)
async def daily(
    owner: OwnerUser,
    request: Request,
    day: Annotated[str, Query(alias="date", description="YYYY-MM-DD")],
    member: MemberFilter = None,
) -> Response:
    return await _view(request, owner, task_rules.day(query_date("date", day)), member)


@router.get(
    "/tasks/weekly",
    response_model=Data,
    responses=_REFUSED,
    summary="The assigned tasks of seven days, and each member's completion",
)
async def weekly(
    owner: OwnerUser,
    request: Request,
    week_start: Annotated[str, Query(alias="weekStart", description="YYYY-MM-DD")],
    member: MemberFilter = None,
) -> Response:
    dates = task_rules.week(query_date("weekStart", week_start))
    return await _view(request, owner, dates, member)


@router.get(
    "/tasks/monthly",
    response_model=Data,
    responses=_REFUSED,
    summary="The assigned tasks of a calendar month, and each member's completion",
)
async def monthly(
    owner: OwnerUser,
    request: Request,
    month: Annotated[str, Query(description="1 to 12")],
    year: Annotated[str, Query(description="YYYY")],
    member: MemberFilter = None,
) -> Response:
    return await _view(request, owner, month_of(month, year), member)


@router.get(
    "/tasks/{task_id}",
    response_model=OneTask,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Read a task the owner assigned",
)
async def get_task(owner: OwnerUser, task_id: str, request: Request) -> Response:
    return task_response(request, await _teams(request).get(owner, task_id))


@router.put(
    "/tasks/{task_id}",
    response_model=OneTask,
    responses={
        **_REFUSED,
        **_NOT_FOUND,
        409: {"model": schemas.Failure, "description": "The task changed since read"},
    },
    summary="Replace an assigned task, or reassign it with a new assigneeId",
)
async def update_task(
    owner: OwnerUser, task_id: str, body: schemas.OwnerTaskUpdate, request: Request
) -> Response:
    task = await _teams(request).update(
        owner,
        task_id,
        body.to_draft(),
        version=body.version,
        assignee=body.assignee_id,
    )
    return task_response(request, task)


@router.delete(
    "/tasks/{task_id}",
    response_model=Data,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Delete an assigned task and cancel its reminder",
)
async def delete_task(owner: OwnerUser, task_id: str, request: Request) -> Response:
    await _teams(request).delete(owner, task_id)
    return responses.ok(request, {"_id": task_id, "deleted": True})
