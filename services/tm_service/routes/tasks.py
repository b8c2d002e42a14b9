"""The visitor's tasks: `/api/v1/visitor/time/tasks`.

Every route acts for the user and tenant of the bearer token only; a task of
anyone else answers 404, exactly like a task that does not exist.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from tm_domain import storage
from tm_domain import tasks as task_rules
from tm_domain.errors import InvalidInput, Problem
from tm_service import responses, schemas
from tm_service.auth import CurrentUser
from tm_service.tasks import TaskService
from tm_service.views import Views

router = APIRouter(prefix="/api/v1/visitor/time/tasks", tags=["visitor tasks"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": schemas.Failure, "description": "No such task for this user"}
}
_REFUSED: dict[int | str, dict[str, Any]] = {
    400: {"model": schemas.Failure, "description": "Invalid input"},
    401: {"model": schemas.Failure, "description": "No valid bearer token"},
}


async def _service(request: Request) -> TaskService:
    # NB: async, so FastAPI calls it in the loop instead of a worker thread.
    service: TaskService = request.app.state.tasks
    return service


Tasks = Annotated[TaskService, Depends(_service)]
OneTask = schemas.Success[schemas.TaskPublic]
ManyTasks = schemas.Success[list[schemas.TaskPublic]]


def _task(
    request: Request, task: dict[str, Any], *, status_code: int = 200
) -> Response:
    return responses.ok(
        request,
        schemas.task_public(task).model_dump(mode="json"),
        status_code=status_code,
    )


def _tasks(request: Request, found: list[dict[str, Any]]) -> Response:
    return responses.ok(
        request, [schemas.task_public(t).model_dump(mode="json") for t in found]
    )


async def _cached_view(
    request: Request,
    service: TaskService,
    user: storage.User,
    view: str,
    dates: task_rules.DateRange,
) -> Response:
    async def load() -> bytes:
        found = await service.view(user, dates)
        return orjson.dumps(
            [schemas.task_public(t).model_dump(mode="json") for t in found]
        )

    views: Views = request.app.state.views
    data = await views.render(user, view, dates.first_text, load)
    return responses.ok_rendered(request, data)


def _query_date(name: str, value: str) -> date:
    try:
        return date.fromisoformat(schemas.calendar_date(value))
    except ValueError as exc:
        raise InvalidInput([Problem(name, str(exc))]) from None


def _whole_number(value: str, low: int, high: int) -> int | None:
    text = value.strip()
    if (
        text.isascii()
        and text.isdigit()
        and len(text) <= 4
        and low <= int(text) <= high
    ):
        return int(text)

    return None


@router.post(
    "",
    status_code=201,
    response_model=OneTask,
    responses=_REFUSED,
    summary="Create a task",
)
async def create_task(
    user: CurrentUser, service: Tasks, body: schemas.TaskCreate, request: Request
) -> Response:
    guard = getattr(request.app.state, "guard", None)
    if guard is not None:
        await guard.take_tasks(request.scope, user, 1)
    task = await service.create(user, body.to_draft())
    return _task(request, task, status_code=201)


@router.get(
    "/daily",
    response_model=ManyTasks,
    responses=_REFUSED,
    summary="The tasks of one day",
)
async def daily_view(
    user: CurrentUser,
    service: Tasks,
    request: Request,
    day: Annotated[str, Query(alias="date", description="YYYY-MM-DD")],
) -> Response:
    dates = task_rules.day(_query_date("date", day))
    return await _cached_view(request, service, user, "daily", dates)


@router.get(
    "/weekly",
    response_model=ManyTasks,
    responses=_REFUSED,
    summary="The tasks of seven days",
)
async def weekly_view(
    user: CurrentUser,
    service: Tasks,
    request: Request,
    week_start: Annotated[
        str, Query(alias="weekStart", description="YYYY-MM-DD, the first day")
    ],
) -> Response:
    dates = task_rules.week(_query_date("weekStart", week_start))
    return await _cached_view(request, service, user, "weekly", dates)


@router.get(
    "/monthly",
    response_model=ManyTasks,
    responses=_REFUSED,
    summary="The tasks of a calendar month",
)
async def monthly_view(
    user: CurrentUser,
    service: Tasks,
    request: Request,
    month: Annotated[str, Query(description="1 to 12")],
    year: Annotated[str, Query(description="YYYY")],
) -> Response:
    month_number = _whole_number(month, 1, 12)
    year_number = _whole_number(year, schemas.YEAR_MIN, schemas.YEAR_MAX)
    if month_number is None or year_number is None:
        problems = [
            Problem(name, f"must be a whole number from {low} to {high}")
            for name, number, low, high in (
                ("month", month_number, 1, 12),
                ("year", year_number, schemas.YEAR_MIN, schemas.YEAR_MAX),
            )
            if number is None
        ]
        raise InvalidInput(problems)

    dates = task_rules.month(year_number, month_number)
    return _tasks(request, await service.view(user, dates))


@router.get(
    "/{task_id}",
    response_model=OneTask,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Read a task",
)
async def get_task(
    user: CurrentUser, service: Tasks, task_id: str, request: Request
) -> Response:
    return _task(request, await service.get(user, task_id))


@router.put(
    "/{task_id}",
    response_model=OneTask,
    responses={
        **_REFUSED,
        **_NOT_FOUND,
        409: {"model": schemas.Failure, "description": "The task changed since read"},
    },
    summary="Replace a task; the body carries the version read",
)
async def update_task(
    user: CurrentUser,
    service: Tasks,
    task_id: str,
    body: schemas.TaskUpdate,
    request: Request,
) -> Response:
    task = await service.update(user, task_id, body.to_draft(), version=body.version)
    return _task(request, task)


@router.patch(
    "/{task_id}/complete",
    response_model=OneTask,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Complete a task, or reopen it with completed false",
)
async def complete_task(
    user: CurrentUser,
    service: Tasks,
    task_id: str,
    request: Request,
    body: schemas.TaskCompletion | None = None,
) -> Response:
    completed = True if body is None else body.completed
    task = await service.set_completed(user, task_id, completed=completed)
    return _task(request, task)


@router.delete(
    "/{task_id}",
    response_model=schemas.Success[dict[str, Any]],
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Delete a task and cancel its reminder",
)
async def delete_task(
    user: CurrentUser, service: Tasks, task_id: str, request: Request
) -> Response:
    await service.delete(user, task_id)
    return responses.ok(request, {"_id": task_id, "deleted": True})
