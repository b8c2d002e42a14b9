"""Task events: one per write on Kafka, also when Kafka was down at the time."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient

from tm_adapters import mongo as mongo_adapter
from tm_adapters.outbox import KafkaPublisher, OutboxRelay
from tm_adapters.task_store import MongoTaskStore
from tm_service.app import create_app
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

TASKS = "/api/v1/visitor/time/tasks"
CLOSED_PORT = "127.0.0.1:1"


async def test_each_write_puts_exactly_one_event_of_its_kind_on_kafka(
    client: httpx.AsyncClient, bearer: Any, example: Any, events: Any
) -> None:
    headers = bearer()
    created = (await client.post(TASKS, json=example(), headers=headers)).json()["data"]
    url = f"{TASKS}/{created['_id']}"
    await client.put(url, json={**created, "title": "renamed"}, headers=headers)
    await client.patch(f"{url}/complete", headers=headers)
    await client.patch(f"{url}/complete", json={"completed": False}, headers=headers)
    await client.delete(url, headers=headers)

    found = await events(count=5)

    assert [key for key, _ in found] == [created["_id"]] * 5
    assert [(e["type"], e["version"]) for _, e in found] == [
        ("TaskCreated", 1),
        ("TaskUpdated", 2),
        ("TaskCompleted", 3),
        ("TaskUpdated", 4),
        ("TaskDeleted", 5),
    ]
    assert len({e["id"] for _, e in found}) == 5
    first = found[0][1]
    assert first["tenantId"] == "tenant-1"
    assert first["userId"] == "user-a"
    assert first["reminderRevision"] == 1
    assert first["occurredAt"].endswith("+00:00")
    assert sorted(d["channel"] for d in first["deliveries"]) == ["email", "sms"]
    assert {d["dueAt"] for d in first["deliveries"]} == {"2030-01-15T08:30:00+00:00"}
    # Completing and deleting leave nothing scheduled; reopening schedules again.
    assert [len(e["deliveries"]) for _, e in found] == [2, 2, 0, 2, 0]
    # Events never carry the recipients.
    assert all("+14155550100" not in str(e) for _, e in found)


async def test_many_quick_writes_lose_no_event_and_no_update(
    client: httpx.AsyncClient, bearer: Any, example: Any, events: Any
) -> None:
    headers = bearer()
    task = (await client.post(TASKS, json=example(), headers=headers)).json()["data"]
    url = f"{TASKS}/{task['_id']}"

    for n in range(2, 21):
        answer = await client.put(
            url, json={**task, "title": f"edit {n}", "version": n - 1}, headers=headers
        )
        assert answer.status_code == 200, answer.text

    final = (await client.get(url, headers=headers)).json()["data"]
    found = await events(count=20)
    assert final["version"] == 20
    assert final["title"] == "edit 20"
    assert [e["version"] for _, e in found] == list(range(1, 21))


async def test_concurrent_writers_of_one_version_let_exactly_one_win(
    client: httpx.AsyncClient, bearer: Any, example: Any, events: Any
) -> None:
    headers = bearer()
    task = (await client.post(TASKS, json=example(), headers=headers)).json()["data"]
    url = f"{TASKS}/{task['_id']}"

    answers = await asyncio.gather(
        *(
            client.put(url, json={**task, "title": f"writer {n}"}, headers=headers)
            for n in range(8)
        )
    )

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * 7
    winner = next(a for a in answers if a.status_code == 200).json()["data"]
    final = (await client.get(url, headers=headers)).json()["data"]
    assert final == winner
    found = await events(count=2)
    assert [e["version"] for _, e in found] == [1, 2]


async def test_a_write_while_kafka_is_down_is_published_when_it_is_back(
    settings: ServiceSettings,
    mongo: AsyncMongoClient[Any],
    topic: str,
    bearer: Any,
    example: Any,
    events: Any,
) -> None:
    # The service starts and writes with no Kafka to talk to.
    cut_off = settings.model_copy(update={"kafka_bootstrap": CLOSED_PORT})
    app = create_app(cut_off)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tm") as http:
            created = await http.post(TASKS, json=example(), headers=bearer())
            ready = await http.get("/readyz")
    task_id = created.json()["data"]["_id"]
    doc = await mongo[settings.mongodb_database].visitor_time_tasks.find_one(
        {"_id": ObjectId(task_id)}
    )
    assert created.status_code == 201
    assert ready.status_code == 503
    assert [d["field"] for d in ready.json()["error"]["details"]] == ["kafka"]
    assert doc is not None and doc["outboxPending"] is True
    assert [e["type"] for e in doc["outbox"]] == ["TaskCreated"]

    # Kafka is back: a relay over the same database publishes what waited.
    client = mongo_adapter.open_client(settings)
    publisher = KafkaPublisher(settings)
    relay = OutboxRelay(
        MongoTaskStore(mongo_adapter.database(client, settings)), publisher
    )
    try:
        done = await relay.relay_once()
    finally:
        await publisher.close()
        await client.close()

    found = await events(count=1)
    after = await mongo[settings.mongodb_database].visitor_time_tasks.find_one(
        {"_id": ObjectId(task_id)}
    )
    assert (done.published, done.failed) == (1, 0)
    assert [(key, e["type"], e["version"]) for key, e in found] == [
        (task_id, "TaskCreated", 1)
    ]
    assert after is not None
    assert after["outbox"] == []
    assert after["outboxPending"] is False


async def test_the_relay_started_without_kafka_publishes_once_kafka_answers(
    settings: ServiceSettings,
    mongo: AsyncMongoClient[Any],
    topic: str,
    bearer: Any,
    example: Any,
    events: Any,
    eventually: Any,
) -> None:
    # A running relay whose publisher first points nowhere, then at Kafka,
    # as when the broker comes back while the service runs.
    publisher = KafkaPublisher(
        settings.model_copy(update={"kafka_bootstrap": CLOSED_PORT})
    )
    app = create_app(settings, publisher=publisher)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tm") as http:
            created = await http.post(TASKS, json=example(), headers=bearer())
            await asyncio.sleep(0.3)
            publisher.bootstrap = settings.kafka_bootstrap
            collection = mongo[settings.mongodb_database].visitor_time_tasks

            async def published() -> bool:
                doc = await collection.find_one({"outboxPending": False})
                return doc is not None

            assert await eventually(published, within=15)

    found = await events(count=1)
    assert created.status_code == 201
    assert [e["type"] for _, e in found] == ["TaskCreated"]
