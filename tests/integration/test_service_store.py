"""The MongoDB stores on the real server: indexes, locks, outages.

What every store must do is in the contract suites (test_task_store.py,
test_reminder_store.py, test_privacy_store.py), run against SQLite too.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pymongo import AsyncMongoClient

from tm_adapters import mongo as mongo_adapter
from tm_adapters.reminder_store import DELIVERIES, MongoReminderStore
from tm_adapters.task_store import COLLECTION, MongoTaskStore
from tm_domain import storage
from tm_service.app import create_app
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

TASKS = "/api/v1/visitor/time/tasks"
ALICE = storage.User(tenant_id="tenant-1", user_id="user-a")


def _keys(info: dict[str, Any]) -> set[tuple[tuple[str, int], ...]]:
    return {tuple((k, int(d)) for k, d in index["key"]) for index in info.values()}


async def test_start_up_creates_the_indexes_and_starting_twice_is_fine(
    settings: ServiceSettings, mongo: AsyncMongoClient[Any], topic: str
) -> None:
    for _ in range(2):
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            pass

    info = await mongo[settings.mongodb_database][COLLECTION].index_information()
    keys = _keys(info)
    per_user = (("tenantId", 1), ("userId", 1))
    assert (*per_user, ("taskDate", 1)) in keys
    assert (*per_user, ("taskDate", 1), ("session", 1)) in keys
    assert (*per_user, ("completed", 1), ("taskDate", 1)) in keys
    assert (*per_user, ("taskDate", 1), ("scopeTag", 1)) in keys
    assert (*per_user, ("sortKey", 1)) in keys
    assert (("tenantId", 1), ("createdAt", -1)) in keys
    assert (
        ("reminder.enabled", 1),
        ("reminder.sendAt", 1),
        ("reminder.sentAt", 1),
    ) in keys
    assert (("outboxPending", 1),) in keys
    assert (("tenantId", 1), ("assignedBy", 1), ("taskDate", 1)) in keys
    for channel in ("sms", "email"):
        assert (
            (f"reminder.deliveries.{channel}.state", 1),
            (f"reminder.deliveries.{channel}.dueAt", 1),
        ) in keys
    assert len(info) == 12  # the eleven above and _id


async def _store(settings: ServiceSettings) -> tuple[Any, MongoTaskStore]:
    client = mongo_adapter.open_client(settings)
    store = MongoTaskStore(mongo_adapter.database(client, settings))
    await store.prepare()
    return client, store


def _task(store: MongoTaskStore, **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "_id": store.new_id(),
        "tenantId": ALICE.tenant_id,
        "userId": ALICE.user_id,
        "title": "t",
        "taskDate": "2030-01-15",
        "sortKey": "2030-01-15|0|--:--",
        "createdAt": now,
        "updatedAt": now,
        "version": 1,
        "writeSeq": 1,
        "deletedAt": None,
        "outbox": [{"id": "e1", "version": 1}],
        "outboxPending": True,
        **fields,
    }


async def test_a_lock_left_by_a_dead_writer_is_taken_over_after_its_lease(
    settings: ServiceSettings, mongo: AsyncMongoClient[Any]
) -> None:
    client, store = await _store(settings)
    db = mongo_adapter.database(client, settings)
    try:
        task = _task(store)
        await store.insert(task)
        await db[mongo_adapter.LOCKS_COLLECTION].insert_one(
            {
                "_id": task["_id"],
                "token": "dead",
                "until": datetime.now(UTC) - timedelta(seconds=1),
            }
        )

        written = await store.write(
            ALICE, task["_id"], write_seq=1, changes={"title": "x"}, event={"id": "e"}
        )
        locks_left = await db[mongo_adapter.LOCKS_COLLECTION].count_documents({})
    finally:
        await client.close()

    assert written is not None and written["title"] == "x"
    assert locks_left == 0


async def test_a_lock_held_by_a_live_writer_makes_others_wait_then_give_up(
    settings: ServiceSettings, mongo: AsyncMongoClient[Any]
) -> None:
    client = mongo_adapter.open_client(settings)
    db = mongo_adapter.database(client, settings)
    locks = mongo_adapter.DocumentLocks(db, wait=timedelta(milliseconds=300))
    order: list[str] = []
    taken = asyncio.Event()
    try:

        async def first() -> None:
            async with locks.hold("k"):
                order.append("first in")
                taken.set()
                await asyncio.sleep(0.1)
                order.append("first out")

        async def second() -> None:
            await taken.wait()
            async with locks.hold("k"):
                order.append("second in")

        await asyncio.gather(first(), second())
        async with locks.hold("busy"):
            with pytest.raises(storage.StoreUnavailable):
                async with locks.hold("busy"):
                    pass
    finally:
        await client.close()

    assert order == ["first in", "first out", "second in"]


async def test_start_up_fails_fast_when_the_store_cannot_be_reached(
    settings: ServiceSettings,
) -> None:
    unreachable = settings.model_copy(
        update={"mongodb_uri": "mongodb://127.0.0.1:1/", "mongodb_timeout_ms": 300}
    )
    app = create_app(unreachable)

    with pytest.raises(storage.StoreUnavailable):
        async with app.router.lifespan_context(app):
            pass


async def test_readyz_names_each_server_that_is_down(
    settings: ServiceSettings, mongo: AsyncMongoClient[Any], topic: str
) -> None:
    half_down = settings.model_copy(
        update={
            "kafka_bootstrap": "127.0.0.1:1",
            "redis_url": "redis://127.0.0.1:1/0",
            "readiness_timeout_ms": 500,
        }
    )
    answers = {}
    for name, chosen in (("up", settings), ("down", half_down)):
        app = create_app(chosen)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                answers[name] = await c.get("/readyz")
                answers[f"{name} healthz"] = await c.get("/healthz")

    assert answers["up"].status_code == 200
    assert answers["up"].json()["data"] == {
        "mongodb": "up",
        "redis": "up",
        "kafka": "up",
    }
    down = answers["down"].json()["error"]
    assert answers["down"].status_code == 503
    assert down["code"] == "SERVICE_UNAVAILABLE"
    assert sorted(d["field"] for d in down["details"]) == ["kafka", "redis"]
    assert "kafka" in down["message"] and "redis" in down["message"]
    assert answers["down healthz"].status_code == 200


async def test_the_api_waits_for_a_task_lock_held_by_the_reminder_worker(
    settings: ServiceSettings, mongo: AsyncMongoClient[Any]
) -> None:
    client, store = await _store(settings)
    db = mongo_adapter.database(client, settings)
    worker_locks = mongo_adapter.DocumentLocks(db)
    order: list[str] = []
    taken = asyncio.Event()
    try:
        task = _task(store)
        await store.insert(task)
        locking = await mongo_adapter.is_ferretdb(db)

        async def worker() -> None:
            async with worker_locks.hold(task["_id"]):
                order.append("worker in")
                taken.set()
                await asyncio.sleep(0.2)
                order.append("worker out")

        async def api() -> None:
            await taken.wait()
            await store.write(
                ALICE, task["_id"], write_seq=1, changes={"title": "x"}, event={}
            )
            order.append("api wrote")

        await asyncio.gather(worker(), api())
    finally:
        await client.close()

    # On MongoDB updates are atomic and nothing is locked.
    expected = ["worker in", "worker out", "api wrote"] if locking else sorted(order)
    assert (order if locking else sorted(order)) == expected
    assert "api wrote" in order


@pytest.mark.parametrize("atomic", [True, False], ids=["mongodb way", "ferretdb way"])
async def test_update_where_writes_only_a_matching_document(
    settings: ServiceSettings, mongo: AsyncMongoClient[Any], atomic: bool
) -> None:
    client = mongo_adapter.open_client(settings)
    db = mongo_adapter.database(client, settings)
    locks: mongo_adapter.Locks = (
        mongo_adapter.NoLocks() if atomic else mongo_adapter.DocumentLocks(db)
    )
    try:
        await db.things.insert_one({"_id": 1, "writeSeq": 1, "title": "a"})

        missed = await mongo_adapter.update_where(
            db.things, 1, {"writeSeq": 2}, {"$set": {"title": "b"}}, locks=locks
        )
        written = await mongo_adapter.update_where(
            db.things,
            1,
            {"writeSeq": 1},
            {"$set": {"title": "c"}, "$inc": {"writeSeq": 1}},
            locks=locks,
        )
        absent = await mongo_adapter.update_where(
            db.things, 2, {}, {"$set": {"title": "d"}}, locks=locks
        )
        after = await db.things.find_one({"_id": 1})
        prior = await mongo_adapter.update_where(
            db.things,
            1,
            {"writeSeq": 2},
            {"$set": {"title": "e"}, "$inc": {"writeSeq": 1}},
            locks=locks,
            before=True,
        )
        stored = await db.things.find_one({"_id": 1})
    finally:
        await client.close()

    assert missed is None
    assert written is not None and (written["title"], written["writeSeq"]) == ("c", 2)
    assert absent is None
    assert after == written
    assert prior == written
    assert stored == {"_id": 1, "writeSeq": 3, "title": "e"}


async def test_the_history_index_is_created_once_and_again_without_error(
    reminder_store: MongoReminderStore,
) -> None:
    await reminder_store.ensure_indexes()
    second = MongoReminderStore(reminder_store.tasks.database)

    await second.ensure_indexes()

    indexes = await reminder_store.tasks.database[DELIVERIES].index_information()
    assert indexes["tenant_user_task"]["key"] == [
        ("tenantId", 1),
        ("userId", 1),
        ("taskId", 1),
    ]
