"""Input validation: one detail per bad field, named as the API names it."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from test_service_fakes import bearer, body, serve

from tm_domain import tasks
from tm_domain.errors import Problem
from tm_service import errors, schemas

TASKS = "/api/v1/visitor/time/tasks"


async def _refused(payload: Any) -> dict[str, str]:
    async with serve() as http:
        # json.dumps escapes what UTF-8 cannot carry, a lone surrogate included.
        answer = await http.post(
            TASKS,
            content=json.dumps(payload),
            headers={**bearer(), "content-type": "application/json"},
        )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    fields = [d["field"] for d in error["details"]]
    assert len(fields) == len(set(fields)), "a field was named twice"
    return {d["field"]: d["message"] for d in error["details"]}


async def test_each_bad_field_gets_one_detail_named_in_camel_case() -> None:
    payload = body(
        title="",
        taskDate="2026-02-30",
        timeOfDay=900,
        durationMin=0,
        scopeTag="yearly",
        tags=["a" * 31, 5, ""],
        reminder={"channels": ["sms", "fax"], "sendAt": 12},
    )

    details = await _refused(payload)

    assert set(details) == {
        "title",
        "taskDate",
        "timeOfDay",
        "durationMin",
        "scopeTag",
        "tags",
        "reminder.channels",
        "reminder.sendAt",
    }
    assert "item 1" in details["tags"] and "item 2" in details["tags"]
    assert "calendar date" in details["taskDate"]


async def test_cross_field_rules_come_from_the_domain_one_detail_each() -> None:
    payload = body(
        timeOfDay="25:00",
        timezone="Mars/Olympus",
        tags=["a", "a"],
        reminder={
            "channels": ["sms", "email"],
            "sendAt": "2030-01-15T08:30:00",
            "phone": "555-0100",
            "email": "not an address",
        },
    )

    details = await _refused(payload)

    assert set(details) == {"timeOfDay", "timezone", "tags"}


async def test_reminder_problems_are_named_with_dots() -> None:
    payload = body(
        reminder={
            "channels": ["sms", "email"],
            "sendAt": "2030-01-15T08:30:00",
            "phone": "555-0100",
            "email": "not an address",
        }
    )

    details = await _refused(payload)

    assert set(details) == {"reminder.sendAt", "reminder.phone", "reminder.email"}
    assert "offset" in details["reminder.sendAt"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"title": None}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "\ud800"}, "title"),
        ({"notes": "x" * 1001}, "notes"),
        ({"session": "night"}, "session"),
        ({"priority": "urgent"}, "priority"),
        ({"durationMin": True}, "durationMin"),
        ({"durationMin": "30"}, "durationMin"),
        ({"taskDate": "2030-1-5"}, "taskDate"),
        ({"taskDate": "1899-12-31"}, "taskDate"),
        ({"taskDate": "3000-01-01"}, "taskDate"),
        ({"category": "c" * 51}, "category"),
        ({"tags": ["t"] * 21}, "tags"),
        ({"unknown": 1}, "unknown"),
        ({"reminder": {"enabled": "yes"}}, "reminder.enabled"),
        ({"reminder": {"sendAt": "tomorrow"}}, "reminder.sendAt"),
        ({"reminder": {"sendAt": "0001-01-01T00:00:00+14:00"}}, "reminder.sendAt"),
        ({"reminder": {"offsetMin": 1.5}}, "reminder.offsetMin"),
        ({"reminder": {"surprise": True}}, "reminder.surprise"),
    ],
)
async def test_a_single_bad_field_is_named_alone(
    change: dict[str, Any], field: str
) -> None:
    assert set(await _refused(body(**change))) == {field}


async def test_a_missing_required_field_is_named() -> None:
    payload = body()
    del payload["title"], payload["session"]

    details = await _refused(payload)

    assert details == {"title": "is required", "session": "is required"}


async def test_a_body_that_is_not_an_object_is_refused_as_a_whole() -> None:
    assert set(await _refused(["title"])) == {"body"}


def test_read_only_fields_echoed_from_a_get_are_accepted_and_ignored() -> None:
    echoed = body(
        _id="6b12e7d466b680bbf03c8394",
        createdAt="2026-01-01T00:00:00Z",
        updatedAt="2026-01-01T00:00:00Z",
        completed=True,
        completedAt=None,
        version=3,
    )
    echoed["reminder"] |= {
        "revision": 2,
        "status": "pending",
        "sentAt": None,
        "attempts": 0,
        "lastError": None,
        "deliveries": {"sms": {"state": "scheduled"}},
        "offsetMin": None,
    }

    update = schemas.TaskUpdate.model_validate(echoed)

    assert update.version == 3
    assert "completed" not in update.model_dump()
    assert "deliveries" not in update.model_dump()["reminder"]


def test_an_update_requires_the_version_read() -> None:
    with pytest.raises(ValidationError) as caught:
        schemas.TaskUpdate.model_validate(body())

    assert [e["loc"] for e in caught.value.errors()] == [("version",)]


def test_a_create_body_becomes_a_domain_draft() -> None:
    draft = schemas.TaskCreate.model_validate(body(timezone="Europe/Paris")).to_draft()

    assert draft.task_date == date(2030, 1, 15)
    assert draft.session is tasks.Session.MORNING
    assert draft.scope is tasks.Scope.DAILY
    assert draft.priority is tasks.Priority.HIGH
    assert draft.tags == ("meeting", "team")
    assert draft.timezone == "Europe/Paris"
    assert draft.reminder is not None
    assert draft.reminder.send_at == datetime(2030, 1, 15, 8, 30, tzinfo=UTC)
    assert [str(c) for c in draft.reminder.channels] == ["sms", "email"]


def test_problems_are_merged_so_each_field_appears_once() -> None:
    merged = errors.one_per_field(
        [
            Problem("reminder.channels", "must name at least one channel"),
            Problem("title", "is required"),
            Problem("reminder.channels", "must not repeat a channel"),
            Problem("title", "is required"),
        ]
    )

    assert merged == [
        (
            "reminder.channels",
            "must name at least one channel; must not repeat a channel",
        ),
        ("title", "is required"),
    ]


def test_pydantic_errors_are_named_without_their_location_kind() -> None:
    problems = errors.problems_from_pydantic(
        [
            {"loc": ("body", "reminder", "phone"), "msg": "x", "type": "string_type"},
            {"loc": ("query", "weekStart"), "msg": "Field required", "type": "missing"},
            {"loc": ("body", "tags", 2), "msg": "too long", "type": "string_too_long"},
            {"loc": ("body", 7), "msg": "bad", "type": "json_invalid", "ctx": {}},
        ]
    )

    assert problems == [
        Problem("reminder.phone", "x"),
        Problem("weekStart", "is required"),
        Problem("tags", "item 2: too long"),
        Problem("body", "is not valid JSON: malformed"),
    ]
