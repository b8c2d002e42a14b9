"""The task service on a store in memory: writes, events, conflicts, views."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from test_service_fakes import ALICE, BOB, MemoryTaskStore, bearer, body, serve

from tm_domain import reminders, tasks
from tm_domain.errors import Conflict, InvalidInput, NotFound
from tm_service import schemas
from tm_service.tasks import TaskService

NOW = datetime(2029, 6, 1, 12, 0, tzinfo=UTC)
TASKS = "/api/v1/visitor/time/tasks"


def _draft(**overrides: Any) -> tasks.TaskDraft:
    return schemas.TaskCreate.model_validate(body(**overrides)).to_draft()


def _service(store: MemoryTaskStore, **options: Any) -> TaskService:
    return TaskService(store, clock=lambda: NOW, **options)


def _events(store: MemoryTaskStore, task_id: str) -> list[dict[str, Any]]:
    return list(store.docs[task_id]["outbox"])


async def test_creating_stores_the_task_with_its_first_event() -> None:
    store = MemoryTaskStore()
    pokes: list[str] = []
    service = _service(store, after_write=pokes.append)

    task = await service.create(ALICE, _draft())

    [event] = _events(store, task["_id"])
    assert task["taskDate"] == "2030-01-15"
    assert task["sortKey"] == "2030-01-15|0|09:00"
    assert task["version"] == 1 and task["writeSeq"] == 1
    assert "outbox" not in task
    assert event["type"] == "TaskCreated"
    assert event["version"] == 1
    assert event["reminderRevision"] == 1
    assert sorted(d["channel"] for d in event["deliveries"]) == ["email", "sms"]
    assert store.docs[task["_id"]]["outboxPending"] is True
    assert pokes == [task["_id"]]


async def test_every_write_bumps_the_version_and_adds_one_event() -> None:
    store = MemoryTaskStore()
    service = _service(store)
    task = await service.create(ALICE, _draft())

    await service.update(ALICE, task["_id"], _draft(title="renamed"), version=1)
    await service.set_completed(ALICE, task["_id"], completed=True)
    await service.set_completed(ALICE, task["_id"], completed=False)
    await service.delete(ALICE, task["_id"])

    events = _events(store, task["_id"])
    assert [(e["type"], e["version"]) for e in events] == [
        ("TaskCreated", 1),
        ("TaskUpdated", 2),
        ("TaskCompleted", 3),
        ("TaskUpdated", 4),
        ("TaskDeleted", 5),
    ]
    assert len({e["id"] for e in events}) == 5
    assert store.docs[task["_id"]]["deletedAt"] == NOW


async def test_completing_cancels_the_deliveries_and_reopening_schedules_again() -> (
    None
):
    store = MemoryTaskStore()
    service = _service(store)
    task = await service.create(ALICE, _draft())

    done = await service.set_completed(ALICE, task["_id"], completed=True)
    reopened = await service.set_completed(ALICE, task["_id"], completed=False)

    assert done["completedAt"] == NOW
    assert reminders.summarize(done["reminder"]).status is reminders.Status.CANCELLED
    assert reminders.scheduled(done["reminder"]) == []
    assert reopened["completedAt"] is None
    assert reopened["reminder"]["revision"] == 2
    assert len(reminders.scheduled(reopened["reminder"])) == 2


async def test_asking_for_the_state_a_task_is_in_writes_nothing() -> None:
    store = MemoryTaskStore()
    service = _service(store)
    task = await service.create(ALICE, _draft())

    same = await service.set_completed(ALICE, task["_id"], completed=False)

    assert same["version"] == 1
    assert len(_events(store, task["_id"])) == 1


async def test_deleting_cancels_open_deliveries_and_hides_the_task() -> None:
    store = MemoryTaskStore()
    service = _service(store)
    task = await service.create(ALICE, _draft())

    await service.delete(ALICE, task["_id"])

    stored = store.docs[task["_id"]]
    assert {d["state"] for d in stored["reminder"]["deliveries"].values()} == {
        "cancelled"
    }
    assert _events(store, task["_id"])[-1]["deliveries"] == []
    with pytest.raises(NotFound):
        await service.get(ALICE, task["_id"])
    with pytest.raises(NotFound):
        await service.delete(ALICE, task["_id"])


async def test_a_stale_version_is_a_conflict_and_changes_nothing() -> None:
    store = MemoryTaskStore()
    service = _service(store)
    task = await service.create(ALICE, _draft())
    await service.update(ALICE, task["_id"], _draft(title="first"), version=1)

    with pytest.raises(Conflict):
        await service.update(ALICE, task["_id"], _draft(title="second"), version=1)

    assert store.docs[task["_id"]]["title"] == "first"
    assert len(_events(store, task["_id"])) == 2


async def test_a_write_retries_when_only_the_worker_moved_the_task() -> None:
    store = MemoryTaskStore()
    service = _service(store)
    task = await service.create(ALICE, _draft())

    def worker_records_a_delivery(doc: dict[str, Any]) -> None:
        doc["writeSeq"] += 1
        doc["reminder"]["deliveries"]["sms"]["attempts"] = 1

    store.before_write = worker_records_a_delivery
    updated = await service.update(ALICE, task["_id"], _draft(title="x"), version=1)

    assert updated["version"] == 2
    assert updated["writeSeq"] == 3
    assert updated["reminder"]["deliveries"]["sms"]["attempts"] == 1


async def test_a_write_that_keeps_missing_gives_up_with_a_conflict() -> None:
    store = MemoryTaskStore()
    service = _service(store, write_attempts=2)
    task = await service.create(ALICE, _draft())

    original = store.write

    async def always_moved(*args: Any, **kwargs: Any) -> None:
        store.docs[task["_id"]]["writeSeq"] += 1
        await original(*args, **kwargs)

    store.write = always_moved  # type: ignore[method-assign]
    with pytest.raises(Conflict):
        await service.set_completed(ALICE, task["_id"], completed=True)


async def test_another_user_finds_nothing_to_read_or_write() -> None:
    store = MemoryTaskStore()
    service = _service(store)
    task = await service.create(ALICE, _draft())

    for attempt in (
        service.get(BOB, task["_id"]),
        service.update(BOB, task["_id"], _draft(), version=1),
        service.set_completed(BOB, task["_id"], completed=True),
        service.delete(BOB, task["_id"]),
    ):
        with pytest.raises(NotFound):
            await attempt
    assert store.docs[task["_id"]]["version"] == 1


async def test_a_reminder_in_the_past_is_refused() -> None:
    service = _service(MemoryTaskStore())
    past = (NOW - timedelta(hours=1)).isoformat()
    draft = _draft(
        reminder={"channels": ["email"], "email": "a@example.com", "sendAt": past}
    )

    with pytest.raises(InvalidInput) as caught:
        await service.create(ALICE, draft)

    assert [p.field for p in caught.value.problems] == ["reminder.sendAt"]


async def test_a_disabled_reminder_needs_no_time_and_schedules_nothing() -> None:
    store = MemoryTaskStore()
    service = _service(store)

    task = await service.create(ALICE, _draft(reminder={"enabled": False}))

    assert task["reminder"]["sendAt"] is None
    assert _events(store, task["_id"])[0]["deliveries"] == []


async def test_views_order_by_part_of_day_then_time_within_each_date() -> None:
    store = MemoryTaskStore()
    service = _service(store)
    for title, day, session, time_of_day in [
        ("evening", "2030-03-04", "evening", "18:00"),
        ("next day", "2030-03-05", "morning", "06:00"),
        ("afternoon late", "2030-03-04", "afternoon", "17:00"),
        ("afternoon early", "2030-03-04", "afternoon", "12:30"),
        ("morning untimed", "2030-03-04", "morning", None),
        ("morning", "2030-03-04", "morning", "08:00"),
        ("outside", "2030-03-11", "morning", "08:00"),
    ]:
        await service.create(
            ALICE,
            _draft(
                title=title,
                taskDate=day,
                session=session,
                timeOfDay=time_of_day,
                reminder=None,
            ),
        )

    week = await service.view(ALICE, tasks.week(date(2030, 3, 4)))
    day = await service.view(ALICE, tasks.day(date(2030, 3, 4)))

    assert [t["title"] for t in week] == [
        "morning untimed",
        "morning",
        "afternoon early",
        "afternoon late",
        "evening",
        "next day",
    ]
    assert [t["title"] for t in day] == [t["title"] for t in week[:5]]
    assert await service.view(BOB, tasks.week(date(2030, 3, 4))) == []


async def test_the_http_views_parse_their_dates_and_refuse_bad_ones() -> None:
    async with serve() as http:
        created = await http.post(TASKS, json=body(), headers=bearer())
        monthly = await http.get(f"{TASKS}/monthly?month=1&year=2030", headers=bearer())
        weekly = await http.get(
            f"{TASKS}/weekly?weekStart=2030-01-10", headers=bearer()
        )
        bad_month = await http.get(
            f"{TASKS}/monthly?month=13&year=abc", headers=bearer()
        )
        bad_week = await http.get(
            f"{TASKS}/weekly?weekStart=2030-02-30", headers=bearer()
        )
        no_date = await http.get(f"{TASKS}/daily", headers=bearer())

    task_id = created.json()["data"]["_id"]
    assert [t["_id"] for t in monthly.json()["data"]] == [task_id]
    assert [t["_id"] for t in weekly.json()["data"]] == [task_id]
    assert bad_month.status_code == 400
    assert sorted(d["field"] for d in bad_month.json()["error"]["details"]) == [
        "month",
        "year",
    ]
    assert [d["field"] for d in bad_week.json()["error"]["details"]] == ["weekStart"]
    assert [d["field"] for d in no_date.json()["error"]["details"]] == ["date"]


async def test_the_http_routes_round_trip_a_task() -> None:
    async with serve() as http:
        created = (await http.post(TASKS, json=body(), headers=bearer())).json()
        url = f"{TASKS}/{created['data']['_id']}"
        edit = {**created["data"], "title": "edited"}
        updated = await http.put(url, json=edit, headers=bearer())
        stale = await http.put(url, json=edit, headers=bearer())
        done = await http.patch(
            f"{url}/complete", json={"completed": True}, headers=bearer()
        )
        deleted = await http.delete(url, headers=bearer())
        gone = await http.get(url, headers=bearer())

    assert updated.json()["data"]["title"] == "edited"
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "CONFLICT"
    assert done.json()["data"]["completed"] is True
    assert deleted.json()["data"]["deleted"] is True
    assert gone.status_code == 404
