"""Cached daily and weekly views on the real Redis: read your own writes, always."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import CLOSED_PORT, TASKS
from tests.support.proxy import Forwarder
from tm_adapters import redis_state
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

Bearer = Callable[..., dict[str, str]]
DAY = "2030-01-15"
NEXT_DAY = "2030-01-16"


def metric(page: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def titles(client: Any, bearer: Bearer, view: str) -> list[str]:
    response = await client.get(f"{TASKS}/{view}", headers=bearer())
    assert response.status_code == 200, response.text
    return [task["title"] for task in response.json()["data"]]


def editable(task: dict[str, Any], **changes: Any) -> dict[str, Any]:
    body = {
        k: v
        for k, v in task.items()
        if k not in {"_id", "completed", "completedAt", "createdAt", "updatedAt"}
    }
    body["reminder"] = None
    return {**body, **changes}


async def test_every_write_shows_in_the_next_cached_read(
    client: Any, bearer: Bearer, example: Any
) -> None:
    daily = f"daily?date={DAY}"
    next_daily = f"daily?date={NEXT_DAY}"
    weekly = "weekly?weekStart=2030-01-13"
    assert await titles(client, bearer, daily) == []
    assert await titles(client, bearer, weekly) == []

    created = (
        await client.post(
            TASKS, json=example(title="Plan", reminder=None), headers=bearer()
        )
    ).json()["data"]
    after_create = await titles(client, bearer, daily)
    week_after_create = await titles(client, bearer, weekly)
    assert await titles(client, bearer, next_daily) == []

    moved = (
        await client.put(
            f"{TASKS}/{created['_id']}",
            json=editable(created, taskDate=NEXT_DAY, title="Plan later"),
            headers=bearer(),
        )
    ).json()["data"]
    after_move = (
        await titles(client, bearer, daily),
        await titles(client, bearer, next_daily),
        await titles(client, bearer, weekly),
    )

    await client.patch(f"{TASKS}/{moved['_id']}/complete", headers=bearer())
    completed = (await client.get(f"{TASKS}/{next_daily}", headers=bearer())).json()
    await client.delete(f"{TASKS}/{moved['_id']}", headers=bearer())
    after_delete = await titles(client, bearer, next_daily)

    assert after_create == ["Plan"]
    assert week_after_create == ["Plan"]
    assert after_move == ([], ["Plan later"], ["Plan later"])
    assert [t["completed"] for t in completed["data"]] == [True]
    assert after_delete == []


async def test_views_are_kept_under_the_design_keys_and_lifetimes(
    client: Any,
    bearer: Bearer,
    settings: ServiceSettings,
    redis_client: Any,
) -> None:
    await titles(client, bearer, f"daily?date={DAY}")
    await titles(client, bearer, f"daily?date={DAY}")
    await titles(client, bearer, "weekly?weekStart=2030-01-13")
    page = (await client.get("/metrics")).text

    prefix = settings.redis_key_prefix
    daily_ttl = await redis_client.ttl(
        f"{prefix}tasks:user:{{tenant-1/user-a}}:daily:{DAY}"
    )
    weekly_ttl = await redis_client.ttl(
        f"{prefix}tasks:user:{{tenant-1/user-a}}:weekly:2030-01-13"
    )
    assert 0 < daily_ttl <= 300
    assert 300 < weekly_ttl <= 600
    assert metric(page, "tm_cache_requests_total", view="daily", result="miss") == 1
    assert metric(page, "tm_cache_requests_total", view="daily", result="hit") == 1
    assert metric(page, "tm_cache_requests_total", view="weekly", result="miss") == 1


async def test_an_erasure_empties_the_cached_views_of_the_person(
    client: Any, bearer: Bearer, example: Any
) -> None:
    await client.post(TASKS, json=example(reminder=None), headers=bearer())
    assert len(await titles(client, bearer, f"daily?date={DAY}")) == 1

    erased = await client.delete("/api/v1/visitor/data", headers=bearer())

    assert erased.status_code == 200
    assert await titles(client, bearer, f"daily?date={DAY}") == []
    assert await titles(client, bearer, "weekly?weekStart=2030-01-09") == []


async def test_a_view_read_during_a_write_is_not_kept_over_it(
    settings: ServiceSettings, redis_client: Any
) -> None:
    link = redis_state.RedisLink(settings.redis_url, timeout_s=1, retry_s=0)
    cache = redis_state.RedisViewCache(link, prefix=settings.redis_key_prefix)
    key = "tasks:user:{t/u}:daily:2030-01-15"

    before = await cache.read(key)
    await cache.invalidate([key])
    kept_stale = await cache.fill(key, b"[]", stamp=before.stamp, ttl_s=60)
    fresh = await cache.read(key)
    kept_fresh = await cache.fill(key, b'["new"]', stamp=fresh.stamp, ttl_s=60)
    hit = await cache.read(key)
    await link.close()

    assert kept_stale is False
    assert fresh.body is None
    assert kept_fresh is True
    assert hit.body == b'["new"]'


async def test_views_are_served_uncached_without_redis(
    settings: ServiceSettings, started: Any, bearer: Bearer, example: Any
) -> None:
    chosen = settings.model_copy(update={"redis_url": f"redis://{CLOSED_PORT}/0"})

    async with started(chosen) as (_, client):
        await client.post(TASKS, json=example(reminder=None), headers=bearer())
        first = await titles(client, bearer, f"daily?date={DAY}")
        second = await titles(client, bearer, "weekly?weekStart=2030-01-15")
        page = (await client.get("/metrics")).text

    assert len(first) == len(second) == 1
    assert metric(page, "tm_redis_unavailable_total", component="cache") >= 1
    assert metric(page, "tm_cache_requests_total", view="daily", result="hit") == 0


async def test_redis_going_away_mid_test_degrades_to_the_store_and_never_serves_stale(
    settings: ServiceSettings, started: Any, bearer: Bearer, example: Any
) -> None:
    target = urlsplit(settings.redis_url)
    forwarder = Forwarder(target.hostname or "127.0.0.1", target.port or 6379)
    await forwarder.start()
    chosen = settings.model_copy(
        update={"redis_url": forwarder.url, "redis_retry_ms": 0}
    )
    daily = f"daily?date={DAY}"

    async with started(chosen) as (_, client):
        await client.post(
            TASKS, json=example(title="Before", reminder=None), headers=bearer()
        )
        cached = await titles(client, bearer, daily)
        await titles(client, bearer, daily)  # now a hit

        await forwarder.stop()
        during = await titles(client, bearer, daily)
        written = await client.post(
            TASKS, json=example(title="During", reminder=None), headers=bearer()
        )
        with_write = await titles(client, bearer, daily)

        await forwarder.start()
        after = await titles(client, bearer, daily)
        page = (await client.get("/metrics")).text
    await forwarder.stop()

    assert cached == ["Before"]
    assert during == ["Before"]
    assert written.status_code == 201
    assert sorted(with_write) == ["Before", "During"]
    # The entry still in Redis predates the write it could not be told of.
    assert sorted(after) == ["Before", "During"]
    assert metric(page, "tm_redis_unavailable_total", component="cache") >= 2


async def test_a_reassigned_task_leaves_the_cached_views_of_one_member_for_the_other(
    client: Any, bearer: Bearer, example: Any
) -> None:
    owner = bearer(sub="olga", role="owner")
    for member in ("mia", "ben"):
        await client.put(f"/api/v1/owner/time/team/members/{member}", headers=owner)
    body = {**example(title="Demo", reminder=None), "assigneeId": "mia"}
    task = (
        await client.post("/api/v1/owner/time/tasks", json=body, headers=owner)
    ).json()["data"]
    mia_before = await titles(client, lambda: bearer(sub="mia"), f"daily?date={DAY}")
    ben_before = await titles(client, lambda: bearer(sub="ben"), f"daily?date={DAY}")

    moved = await client.put(
        f"/api/v1/owner/time/tasks/{task['_id']}",
        json={**body, "assigneeId": "ben", "version": task["version"]},
        headers=owner,
    )
    member_batch = await client.post(
        f"{TASKS}/batch",
        json={"operations": [{"op": "delete", "id": task["_id"]}]},
        headers=bearer(sub="ben"),
    )

    assert moved.status_code == 200, moved.text
    assert (mia_before, ben_before) == (["Demo"], [])
    assert await titles(client, lambda: bearer(sub="mia"), f"daily?date={DAY}") == []
    assert await titles(client, lambda: bearer(sub="ben"), f"daily?date={DAY}") == [
        "Demo"
    ]
    assert member_batch.json()["data"]["results"][0]["status"] == 403
