"""The visitor's tasks: `/api/v1/visitor/time/tasks`.

Every route acts for the user and tenant of the bearer token only; a task of
anyone else answers 404, exactly like a task that does not exist.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from tm_domain import search, storage
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


def task_response(
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


def query_date(name: str, value: str) -> date:
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


def month_of(month: str, year: str) -> task_rules.DateRange:
    """The days of a month named by query parameters; InvalidInput if bad."""
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

    return task_rules.month(year_number, month_number)


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
    return task_response(request, task, status_code=201)


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
    dates = task_rules.day(query_date("date", day))
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
    dates = task_rules.week(query_date("weekStart", week_start))
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
    return _tasks(request, await service.view(user, month_of(month, year)))


def _choice(name: str, value: str | None, kind: type[StrEnum]) -> Any:
    if value is None:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(member) for member in kind)
        raise InvalidInput([Problem(name, f"must be one of {allowed}")]) from None


def _flag(name: str, value: str | None) -> bool | None:
    if value is None:
        return None
    if value not in ("true", "false"):
        raise InvalidInput([Problem(name, "must be true or false")])
    return value == "true"


@router.get(
    "/search",
    response_model=schemas.Success[schemas.SearchPage],
    responses=_REFUSED,
    summary="Search the tasks, a page at a time",
    description=(
        "Every parameter narrows the search; results come in the order of "
        f"the views, at most {search.LIMIT_MAX} a page (default "
        f"{search.LIMIT_DEFAULT}), and `data.nextCursor` leads to the next page."
    ),
)
async def search_tasks(
    user: CurrentUser,
    service: Tasks,
    request: Request,
    q: Annotated[str | None, Query(description="Text in the title or notes")] = None,
    tags: Annotated[
        str | None, Query(description="Comma-separated; all must be present")
    ] = None,
    category: Annotated[str | None, Query()] = None,
    priority: Annotated[str | None, Query(description="low, medium or high")] = None,
    session: Annotated[
        str | None, Query(description="morning, afternoon or evening")
    ] = None,
    completed: Annotated[str | None, Query(description="true or false")] = None,
    first: Annotated[str | None, Query(alias="from", description="YYYY-MM-DD")] = None,
    last: Annotated[str | None, Query(alias="to", description="YYYY-MM-DD")] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[str | None, Query(description="1 to 100")] = None,
) -> Response:
    page_size = search.LIMIT_DEFAULT
    if limit is not None:
        page_size = _whole_number(limit, 1, search.LIMIT_MAX) or 0
    query = search.SearchQuery(
        text=q,
        tags=tuple(t.strip() for t in tags.split(",")) if tags is not None else (),
        category=category,
        priority=_choice("priority", priority, task_rules.Priority),
        session=_choice("session", session, task_rules.Session),
        completed=_flag("completed", completed),
        first=None if first is None else query_date("from", first).isoformat(),
        last=None if last is None else query_date("to", last).isoformat(),
    )
    found, next_cursor = await service.search(
        user, query, cursor=cursor, limit=page_size
    )
    page = schemas.SearchPage(
        items=[schemas.task_public(t) for t in found], next_cursor=next_cursor
    )
    return responses.ok(request, page.model_dump(mode="json", by_alias=True))


@router.get(
    "/{task_id}",
    response_model=OneTask,
    responses={**_REFUSED, **_NOT_FOUND},
    summary="Read a task",
)
async def get_task(
    user: CurrentUser, service: Tasks, task_id: str, request: Request
) -> Response:
    return task_response(request, await service.get(user, task_id))


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
    return task_response(request, task)


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
    return task_response(request, task)


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
