"""Batches on the real servers: results in order, partial success, idempotency keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bson import ObjectId

from tests.integration.conftest import CLOSED_PORT, TASKS
from tm_adapters import redis_state
from tm_service import batch, schemas
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

Bearer = Callable[..., dict[str, str]]
BATCH = f"{TASKS}/batch"
DAY = "2030-01-15"


async def count_on_day(client: Any, bearer: Bearer, **who: str) -> int:
    response = await client.get(f"{TASKS}/daily?date={DAY}", headers=bearer(**who))
    return len(response.json()["data"])


async def test_each_operation_is_answered_in_order_and_one_failure_stops_none(
    client: Any, bearer: Bearer, example: Any
) -> None:
    existing = (
        await client.post(TASKS, json=example(reminder=None), headers=bearer())
    ).json()["data"]
    update = {**example(title="Renamed", reminder=None), "version": 1}
    stale = {**example(title="Late", reminder=None), "version": 1}
    unknown = str(ObjectId())

    response = await client.post(
        BATCH,
        json={
            "operations": [
                {"op": "create", "task": example(title="New", reminder=None)},
                {"op": "update", "id": existing["_id"], "task": update},
                {"op": "update", "id": existing["_id"], "task": stale},
                {"op": "complete", "id": existing["_id"]},
                {"op": "delete", "id": unknown},
                {"op": "create", "task": example(title="")},
                {"op": "archive", "id": existing["_id"]},
                {"op": "complete", "id": existing["_id"], "task": {"completed": False}},
            ]
        },
        headers=bearer(),
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    results = data["results"]
    assert [r["index"] for r in results] == list(range(8))
    assert [r["status"] for r in results] == [201, 200, 409, 200, 404, 400, 400, 200]
    assert (data["succeeded"], data["failed"]) == (4, 4)
    assert results[0]["data"]["title"] == "New"
    assert results[1]["data"]["title"] == "Renamed"
    assert results[2]["error"]["code"] == "CONFLICT"
    assert results[3]["data"]["completed"] is True
    assert results[4]["error"]["code"] == "NOT_FOUND"
    assert results[5]["error"]["details"][0]["field"] == "task.title"
    assert results[6]["op"] is None
    assert results[6]["error"]["code"] == "VALIDATION_ERROR"
    assert results[7]["data"]["completed"] is False
    assert set(results[4]["error"]) == {
        "code",
        "message",
        "details",
        "requestId",
        "timestamp",
    }
    assert await count_on_day(client, bearer) == 2


async def test_a_retried_batch_with_its_key_gets_the_first_answer_and_creates_once(
    client: Any, bearer: Bearer, example: Any
) -> None:
    body = {"operations": [{"op": "create", "task": example(reminder=None)}]}
    key = {"Idempotency-Key": "batch-0001"}

    first = await client.post(BATCH, json=body, headers={**bearer(), **key})
    retry = await client.post(BATCH, json=body, headers={**bearer(), **key})
    reused = await client.post(
        BATCH,
        json={"operations": [{"op": "delete", "id": str(ObjectId())}]},
        headers={**bearer(), **key},
    )
    someone_else = await client.post(
        BATCH, json=body, headers={**bearer(sub="user-b"), **key}
    )

    assert first.status_code == 200
    assert "Idempotent-Replayed" not in first.headers
    assert retry.status_code == 200
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert retry.content == first.content
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert someone_else.status_code == 200
    assert "Idempotent-Replayed" not in someone_else.headers
    assert await count_on_day(client, bearer) == 1
    assert await count_on_day(client, bearer, sub="user-b") == 1


async def test_a_retry_while_the_first_runs_is_told_to_wait(
    client: Any, bearer: Bearer, example: Any, settings: ServiceSettings
) -> None:
    body = {"operations": [{"op": "create", "task": example(reminder=None)}]}

    # The first request holds the key, as if it were still running.
    link = redis_state.RedisLink(settings.redis_url, timeout_s=1, retry_s=0)
    keys = redis_state.RedisIdempotencyStore(link, prefix=settings.redis_key_prefix)
    digest = batch.fingerprint(schemas.BatchRequest.model_validate(body))
    await keys.begin("{tenant-1/user-a}:slow-1", digest, lock_s=60)
    await link.close()

    retry = await client.post(
        BATCH, json=body, headers={**bearer(), "Idempotency-Key": "slow-1"}
    )

    assert retry.status_code == 409
    assert retry.json()["error"]["code"] == "IDEMPOTENCY_KEY_IN_USE"
    assert retry.headers["Retry-After"] == "1"
    assert await count_on_day(client, bearer) == 0


async def test_batch_bounds_and_quotas_refuse_the_whole_batch(
    settings: ServiceSettings, started: Any, bearer: Bearer, example: Any
) -> None:
    chosen = settings.model_copy(update={"rate_limit_tasks_per_hour": 2})
    three = {
        "operations": [
            {"op": "create", "task": example(reminder=None)} for _ in range(3)
        ]
    }
    too_many = {"operations": [{"op": "delete", "id": "x"}] * 101}

    async with started(chosen) as (_, client):
        over_quota = await client.post(BATCH, json=three, headers=bearer())
        over_size = await client.post(BATCH, json=too_many, headers=bearer())
        empty = await client.post(BATCH, json={"operations": []}, headers=bearer())
        created = await count_on_day(client, bearer)

    assert over_quota.status_code == 429
    assert over_quota.headers["RateLimit"].startswith('"tasks-hour";r=2;')
    assert over_size.status_code == 400
    assert over_size.json()["error"]["details"][0]["field"] == "operations"
    assert empty.status_code == 400
    assert created == 0


async def test_without_redis_a_keyed_batch_is_refused_and_an_unkeyed_one_runs(
    settings: ServiceSettings, started: Any, bearer: Bearer, example: Any
) -> None:
    chosen = settings.model_copy(update={"redis_url": f"redis://{CLOSED_PORT}/0"})
    body = {"operations": [{"op": "create", "task": example(reminder=None)}]}

    async with started(chosen) as (_, client):
        keyed = await client.post(
            BATCH, json=body, headers={**bearer(), "Idempotency-Key": "k-1"}
        )
        unkeyed = await client.post(BATCH, json=body, headers=bearer())
        created = await count_on_day(client, bearer)

    assert keyed.status_code == 503
    assert keyed.headers["Retry-After"] == "5"
    assert unkeyed.status_code == 200
    assert unkeyed.json()["data"]["results"][0]["status"] == 201
    assert created == 1
