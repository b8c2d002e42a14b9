"""The task API end to end over the real store: CRUD, isolation, views, dates."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

TASKS = "/api/v1/visitor/time/tasks"


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(TASKS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()["data"]
    return task


async def test_task_round_trip_create_read_update_complete_delete(
    client: httpx.AsyncClient, bearer: Any, example: Any
) -> None:
    headers = bearer()

    created = await client.post(TASKS, json=example(), headers=headers)
    task = created.json()["data"]
    read = await client.get(f"{TASKS}/{task['_id']}", headers=headers)
    assert created.status_code == 201
    assert read.status_code == 200
    assert read.json()["data"] == task
    assert task["taskDate"] == "2030-01-15"
    assert task["version"] == 1
    assert task["reminder"]["status"] == "pending"
    assert task["reminder"]["sendAt"] == "2030-01-15T08:30:00Z"
    assert set(task["reminder"]["deliveries"]) == {"sms", "email"}

    edit = {**task, "title": "Standup, moved", "timeOfDay": "10:00"}
    updated = await client.put(f"{TASKS}/{task['_id']}", json=edit, headers=headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["title"] == "Standup, moved"
    assert updated.json()["data"]["version"] == 2
    # The reminder did not change, so it keeps its revision and deliveries.
    assert updated.json()["data"]["reminder"]["revision"] == 1

    completed = await client.patch(f"{TASKS}/{task['_id']}/complete", headers=headers)
    done = completed.json()["data"]
    assert completed.status_code == 200
    assert done["completed"] is True
    assert done["completedAt"] is not None
    assert done["reminder"]["status"] == "cancelled"
    assert {d["state"] for d in done["reminder"]["deliveries"].values()} == {
        "cancelled"
    }

    reopened = await client.patch(
        f"{TASKS}/{task['_id']}/complete", json={"completed": False}, headers=headers
    )
    assert reopened.json()["data"]["completed"] is False
    assert reopened.json()["data"]["reminder"]["status"] == "pending"
    assert reopened.json()["data"]["reminder"]["revision"] == 2

    deleted = await client.delete(f"{TASKS}/{task['_id']}", headers=headers)
    gone = await client.get(f"{TASKS}/{task['_id']}", headers=headers)
    assert deleted.status_code == 200
    assert deleted.json()["data"] == {"_id": task["_id"], "deleted": True}
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "NOT_FOUND"


async def test_delete_is_soft_and_cancels_open_deliveries(
    client: httpx.AsyncClient,
    bearer: Any,
    example: Any,
    mongo: AsyncMongoClient[Any],
    settings: ServiceSettings,
) -> None:
    task = await _create(client, bearer(), example())

    await client.delete(f"{TASKS}/{task['_id']}", headers=bearer())

    doc = await mongo[settings.mongodb_database].visitor_time_tasks.find_one(
        {"_id": ObjectId(task["_id"])}
    )
    assert doc is not None
    assert doc["deletedAt"] is not None
    assert {d["state"] for d in doc["reminder"]["deliveries"].values()} == {"cancelled"}
    daily = await client.get(f"{TASKS}/daily?date=2030-01-15", headers=bearer())
    assert daily.json()["data"] == []


@pytest.mark.parametrize(
    "other",
    [
        {"sub": "user-b", "tenant": "tenant-1"},
        {"sub": "user-a", "tenant": "tenant-2"},
    ],
    ids=["another user", "same user id in another tenant"],
)
async def test_another_user_cannot_reach_a_task_and_learns_nothing(
    client: httpx.AsyncClient, bearer: Any, example: Any, other: dict[str, str]
) -> None:
    task = await _create(client, bearer(), example())
    url = f"{TASKS}/{task['_id']}"
    intruder = bearer(**other)

    answers = [
        await client.get(url, headers=intruder),
        await client.put(url, json={**example(), "version": 1}, headers=intruder),
        await client.patch(f"{url}/complete", headers=intruder),
        await client.delete(url, headers=intruder),
        await client.get(f"{TASKS}/daily?date=2030-01-15", headers=intruder),
    ]

    assert [a.status_code for a in answers[:4]] == [404, 404, 404, 404]
    assert {a.json()["error"]["code"] for a in answers[:4]} == {"NOT_FOUND"}
    assert answers[4].json()["data"] == []
    untouched = await client.get(url, headers=bearer())
    assert untouched.json()["data"] == task


async def test_stale_put_is_a_conflict_and_changes_nothing(
    client: httpx.AsyncClient,
    bearer: Any,
    example: Any,
    mongo: AsyncMongoClient[Any],
    settings: ServiceSettings,
) -> None:
    task = await _create(client, bearer(), example())
    url = f"{TASKS}/{task['_id']}"
    first = await client.put(url, json={**task, "title": "first"}, headers=bearer())
    collection = mongo[settings.mongodb_database].visitor_time_tasks
    before = await collection.find_one({"_id": ObjectId(task["_id"])})

    stale = await client.put(url, json={**task, "title": "second"}, headers=bearer())

    after = await collection.find_one({"_id": ObjectId(task["_id"])})
    assert first.status_code == 200
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "CONFLICT"
    # The relay may publish events meanwhile; nothing else may change.
    relayed = {"outbox", "outboxPending"}
    assert after is not None and before is not None
    assert {k: v for k, v in after.items() if k not in relayed} == {
        k: v for k, v in before.items() if k not in relayed
    }
    assert after["title"] == "first"


async def test_views_sort_by_part_of_day_then_time_and_skip_deleted(
    client: httpx.AsyncClient, bearer: Any, example: Any
) -> None:
    headers = bearer()
    plan = [
        ("evening late", "2030-03-04", "evening", "21:00"),
        ("afternoon", "2030-03-04", "afternoon", "14:00"),
        ("morning at 9", "2030-03-04", "morning", "09:00"),
        ("morning all day", "2030-03-04", "morning", None),
        ("evening early", "2030-03-04", "evening", "18:30"),
        ("next day", "2030-03-05", "morning", "07:00"),
        ("next week", "2030-03-11", "morning", "07:00"),
        ("next month", "2030-04-01", "morning", "07:00"),
    ]
    for title, day, session, time_of_day in plan:
        await _create(
            client,
            headers,
            example(
                title=title,
                taskDate=day,
                session=session,
                timeOfDay=time_of_day,
                reminder=None,
            ),
        )
    doomed = await _create(
        client, headers, example(title="deleted", taskDate="2030-03-04", reminder=None)
    )
    await client.delete(f"{TASKS}/{doomed['_id']}", headers=headers)

    daily = await client.get(
        f"{TASKS}/daily", params={"date": "2030-03-04"}, headers=headers
    )
    weekly = await client.get(
        f"{TASKS}/weekly", params={"weekStart": "2030-03-04"}, headers=headers
    )
    monthly = await client.get(
        f"{TASKS}/monthly", params={"month": "3", "year": "2030"}, headers=headers
    )

    day_titles = [
        "morning all day",
        "morning at 9",
        "afternoon",
        "evening early",
        "evening late",
    ]
    assert [t["title"] for t in daily.json()["data"]] == day_titles
    assert [t["title"] for t in weekly.json()["data"]] == [*day_titles, "next day"]
    assert [t["title"] for t in monthly.json()["data"]] == [
        *day_titles,
        "next day",
        "next week",
    ]


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "America/Los_Angeles"])
async def test_a_date_saved_far_from_utc_comes_back_the_same_in_every_view(
    client: httpx.AsyncClient, bearer: Any, example: Any, zone: str
) -> None:
    headers = bearer()
    # Half past midnight there is still the day before in UTC, or already
    # the day after: the date must not move either way.
    body = example(taskDate="2026-03-08", timeOfDay="00:30", timezone=zone)
    task = await _create(client, headers, {**body, "reminder": None})

    read = await client.get(f"{TASKS}/{task['_id']}", headers=headers)
    daily = await client.get(f"{TASKS}/daily?date=2026-03-08", headers=headers)
    weekly = await client.get(f"{TASKS}/weekly?weekStart=2026-03-02", headers=headers)
    monthly = await client.get(f"{TASKS}/monthly?month=3&year=2026", headers=headers)
    day_before = await client.get(f"{TASKS}/daily?date=2026-03-07", headers=headers)
    day_after = await client.get(f"{TASKS}/daily?date=2026-03-09", headers=headers)

    assert task["taskDate"] == "2026-03-08"
    assert task["timezone"] == zone
    assert read.json()["data"]["taskDate"] == "2026-03-08"
    for view in (daily, weekly, monthly):
        assert [t["taskDate"] for t in view.json()["data"]] == ["2026-03-08"]
    assert day_before.json()["data"] == []
    assert day_after.json()["data"] == []


async def test_offset_reminder_resolves_in_the_task_time_zone(
    client: httpx.AsyncClient, bearer: Any, example: Any
) -> None:
    body = example(
        taskDate="2030-03-08",
        timeOfDay="09:00",
        timezone="Pacific/Kiritimati",
        reminder={
            "enabled": True,
            "channels": ["email"],
            "offsetMin": 30,
            "email": "user@example.com",
        },
    )

    task = await _create(client, bearer(), body)

    # 08:30 at UTC+14 is 18:30 UTC the day before; the task's date stays.
    assert task["reminder"]["sendAt"] == "2030-03-07T18:30:00Z"
    assert task["taskDate"] == "2030-03-08"


HOSTILE: list[tuple[str, str, str, Any]] = [
    ("huge title", "POST", TASKS, {"title": "x" * 100_000}),
    ("huge body", "POST", TASKS, {"notes": "x" * 300_000}),
    ("title is a number", "POST", TASKS, {"title": 42}),
    ("title is null", "POST", TASKS, {"title": None}),
    ("blank title", "POST", TASKS, {"title": "   "}),
    ("unicode title", "POST", TASKS, {"title": "✓ 日本語 \u0000 😀"}),
    ("lone surrogate", "POST", TASKS, {"title": "\ud800"}),
    ("30 February", "POST", TASKS, {"taskDate": "2026-02-30"}),
    ("date with time", "POST", TASKS, {"taskDate": "2030-01-15T00:00:00Z"}),
    ("year 1", "POST", TASKS, {"taskDate": "0001-01-01"}),
    ("year 9999", "POST", TASKS, {"taskDate": "9999-12-31"}),
    ("date is a number", "POST", TASKS, {"taskDate": 20300115}),
    ("tags not a list", "POST", TASKS, {"tags": "meeting"}),
    ("tags repeated", "POST", TASKS, {"tags": ["a", "a"]}),
    ("tags nested", "POST", TASKS, {"tags": [["a"]]}),
    ("durationMin float", "POST", TASKS, {"durationMin": 1.5}),
    ("durationMin huge", "POST", TASKS, {"durationMin": 10**40}),
    ("durationMin bool", "POST", TASKS, {"durationMin": True}),
    ("session unknown", "POST", TASKS, {"session": "night"}),
    ("timezone path", "POST", TASKS, {"timezone": "../../etc/passwd"}),
    ("timezone NUL", "POST", TASKS, {"timezone": "UTC\u0000"}),
    ("timeOfDay 24:00", "POST", TASKS, {"timeOfDay": "24:00"}),
    ("reminder not object", "POST", TASKS, {"reminder": "soon"}),
    (
        "naive sendAt",
        "POST",
        TASKS,
        {
            "reminder": {
                "channels": ["email"],
                "email": "a@example.com",
                "sendAt": "2030-01-15T08:30:00",
            }
        },
    ),
    (
        "sendAt year 1",
        "POST",
        TASKS,
        {
            "reminder": {
                "channels": ["email"],
                "email": "a@example.com",
                "sendAt": "0001-01-01T00:00:00+14:00",
            }
        },
    ),
    (
        "sendAt past",
        "POST",
        TASKS,
        {
            "reminder": {
                "channels": ["email"],
                "email": "a@example.com",
                "sendAt": "2001-01-01T00:00:00Z",
            }
        },
    ),
    (
        "offsetMin huge",
        "POST",
        TASKS,
        {
            "reminder": {
                "channels": ["email"],
                "email": "a@example.com",
                "offsetMin": 10**30,
            }
        },
    ),
    (
        "offsetMin negative",
        "POST",
        TASKS,
        {
            "reminder": {
                "channels": ["email"],
                "email": "a@example.com",
                "offsetMin": -5,
            }
        },
    ),
    ("disabled without time", "POST", TASKS, {"reminder": {"enabled": False}}),
    (
        "sms without phone",
        "POST",
        TASKS,
        {"reminder": {"channels": ["sms"], "sendAt": "2030-01-15T08:30:00Z"}},
    ),
    (
        "phone with newline",
        "POST",
        TASKS,
        {
            "reminder": {
                "channels": ["sms"],
                "phone": "+14155550100\n",
                "sendAt": "2030-01-15T08:30:00Z",
            }
        },
    ),
    ("unknown field", "POST", TASKS, {"owner": "me"}),
    ("body is a list", "POST", TASKS, ["title"]),
    ("day 2026-02-30", "GET", f"{TASKS}/daily?date=2026-02-30", None),
    ("day missing", "GET", f"{TASKS}/daily", None),
    ("month 13", "GET", f"{TASKS}/monthly?month=13&year=2026", None),
    ("month garbage", "GET", f"{TASKS}/monthly?month=%F0%9F%98%80&year=-1", None),
    ("weekStart garbage", "GET", f"{TASKS}/weekly?weekStart=garbage", None),
    ("weekStart at the end", "GET", f"{TASKS}/weekly?weekStart=9999-12-31", None),
    ("id garbage", "GET", f"{TASKS}/not-an-id", None),
    ("id unicode", "GET", f"{TASKS}/%E2%9C%93%00", None),
    ("put garbage id", "PUT", f"{TASKS}/zzz", {"version": 1}),
    ("patch body null", "PATCH", f"{TASKS}/{ObjectId()}/complete", "null"),
    (
        "patch completed string",
        "PATCH",
        f"{TASKS}/{ObjectId()}/complete",
        {"completed": "yes"},
    ),
]


@pytest.mark.parametrize(
    ("method", "url", "change"),
    [(m, u, c) for _, m, u, c in HOSTILE],
    ids=[name for name, *_ in HOSTILE],
)
async def test_no_input_produces_a_server_error(
    client: httpx.AsyncClient,
    bearer: Any,
    example: Any,
    method: str,
    url: str,
    change: Any,
) -> None:
    if isinstance(change, dict) and method == "POST":
        payload: Any = example(**change)
    else:
        payload = change
    # json.dumps escapes what UTF-8 cannot carry, a lone surrogate included.
    content = payload if isinstance(payload, str) else json.dumps(payload)

    response = await client.request(
        method,
        url,
        content=None if payload is None else content,
        headers={**bearer(), "content-type": "application/json"},
    )

    assert response.status_code < 500, response.text
    envelope = response.json()
    assert isinstance(envelope["success"], bool)
    if not envelope["success"]:
        assert set(envelope["error"]) == {
            "code",
            "message",
            "details",
            "requestId",
            "timestamp",
        }
