"""The cached daily view answered in front of the routes: the routes' answer, faster.

Each test runs replicas of the service on the same database and Redis keys,
one of them with `TM_VIEW_FAST_PATH=false` where the comparison needs the
routes' own answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import TASKS
from tests.integration.test_service_limits import Clock, register, shared_with
from tm_service import fast_views
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

Bearer = Callable[..., dict[str, str]]
DAILY = f"{TASKS}/daily?date=2030-01-15"
ORIGIN = "https://planner.example"
TIMESTAMP = re.compile(rb'"timestamp":"[^"]+"')


def served(page: str) -> dict[str, float]:
    """`tm_fast_view_requests_total` by result."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == "tm_fast_view_requests_total":
                found[sample.labels["result"]] = sample.value
    return found


async def forget_limits(redis_client: Any, settings: ServiceSettings) -> None:
    """Every bucket full again, so two calls meet the limits alike."""
    names = [
        k async for k in redis_client.scan_iter(f"{settings.redis_key_prefix}rl:*")
    ]
    if names:
        await redis_client.delete(*names)


async def test_an_answer_in_front_of_the_routes_is_the_routes_answer(
    settings: ServiceSettings,
    started: Any,
    bearer: Bearer,
    example: Any,
    redis_client: Any,
) -> None:
    chosen = settings.model_copy(update={"cors_origins": [ORIGIN]})
    routes_only = chosen.model_copy(update={"view_fast_path": False})
    headers = {**bearer(), "X-Request-ID": "compare-1", "Origin": ORIGIN}

    async with started(chosen) as (_, fast), started(routes_only) as (_, slow):
        for title in ("Plan", "Review"):
            await fast.post(TASKS, json=example(title=title), headers=bearer())
        await slow.get(DAILY, headers=bearer())  # fills the cache

        await forget_limits(redis_client, settings)
        in_front = await fast.get(DAILY, headers=headers)
        await forget_limits(redis_client, settings)
        through_routes = await slow.get(DAILY, headers=headers)
        fast_page = (await fast.get("/metrics")).text
        slow_page = (await slow.get("/metrics")).text

    assert served(fast_page) == {"served": 1.0, "passed": 0.0}
    assert served(slow_page) == {}
    assert in_front.status_code == through_routes.status_code == 200
    assert in_front.headers.raw == through_routes.headers.raw
    assert in_front.headers["access-control-allow-origin"] == ORIGIN
    assert in_front.headers["x-request-id"] == "compare-1"
    assert in_front.headers["RateLimit"] == '"user";r=59;t=1'
    assert TIMESTAMP.sub(b"", in_front.content) == TIMESTAMP.sub(
        b"", through_routes.content
    )
    assert [t["title"] for t in in_front.json()["data"]] == ["Plan", "Review"]


async def test_a_write_through_one_replica_shows_in_the_next_read_of_another(
    settings: ServiceSettings, started: Any, bearer: Bearer, example: Any
) -> None:
    async def titles(client: Any) -> list[str]:
        answer = await client.get(DAILY, headers=bearer())
        assert answer.status_code == 200, answer.text
        return [task["title"] for task in answer.json()["data"]]

    async with started(settings) as (_, one), started(settings) as (_, two):
        await one.post(TASKS, json=example(title="Plan"), headers=bearer())
        before = [await titles(one), await titles(one)]
        await two.post(TASKS, json=example(title="Review"), headers=bearer())
        after = [await titles(one), await titles(one)]
        page = (await one.get("/metrics")).text

    assert before == [["Plan"], ["Plan"]]
    assert after == [["Plan", "Review"], ["Plan", "Review"]]
    # Each write left one miss to the routes; the reads after it were hits.
    assert served(page) == {"served": 2.0, "passed": 2.0}


async def test_a_call_refused_for_its_address_spends_nothing_of_the_callers_limit(
    settings: ServiceSettings, started: Any, bearer: Bearer, redis_client: Any
) -> None:
    clock = Clock()
    link, shared = shared_with(settings, clock)
    chosen = settings.model_copy(
        update={"rate_limit_ip_per_minute": 2, "rate_limit_ip_burst": 2}
    )
    user_bucket = f"{settings.redis_key_prefix}rl:user:{{tenant-1/user-a}}"

    async with started(chosen, shared=shared) as (_, client):
        allowed = [await client.get(DAILY, headers=bearer()) for _ in range(2)]
        spent = await redis_client.get(user_bucket)
        refused = await client.get(DAILY, headers=bearer())
        unspent = await redis_client.get(user_bucket)
        clock.advance(30)
        after_interval = await client.get(DAILY, headers=bearer())
        page = (await client.get("/metrics")).text
    await link.close()

    assert [a.status_code for a in allowed] == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert refused.headers["RateLimit"].startswith('"ip";r=0;')
    assert unspent == spent
    assert after_interval.status_code == 200
    assert served(page) == {"served": 2.0, "passed": 2.0}


async def test_a_caller_answered_in_front_meets_its_tenants_standing_of_the_moment(
    settings: ServiceSettings, started: Any, bearer: Bearer, mongo: Any
) -> None:
    # The tenant is looked up afresh on every request.
    chosen = settings.model_copy(update={"tenant_cache_s": 0})
    await register(mongo, settings, "shifting", calls=50)
    tenants = mongo[settings.mongodb_database]["tenants"]
    caller = bearer(tenant="shifting")

    async with started(chosen) as (_, client):
        first = [await client.get(DAILY, headers=caller) for _ in range(2)]
        await tenants.update_one(
            {"_id": "shifting"}, {"$set": {"quotas.apiCallsPerMinute": 500}}
        )
        raised = await client.get(DAILY, headers=caller)
        await tenants.update_one({"_id": "shifting"}, {"$set": {"active": False}})
        deactivated = await client.get(DAILY, headers=caller)
        page = (await client.get("/metrics")).text

    assert [a.status_code for a in first] == [200, 200]
    assert first[1].headers["RateLimit-Policy"] == '"user";q=50;w=60'
    assert raised.status_code == 200
    assert raised.headers["RateLimit-Policy"] == '"user";q=500;w=60'
    assert deactivated.status_code == 403
    assert deactivated.json()["error"]["code"] == "TENANT_INACTIVE"
    # The first read filled the cache; the next two were answered in front.
    assert served(page)["served"] == 2.0


async def test_answers_in_front_are_counted_in_batches_and_all_by_a_scrape(
    settings: ServiceSettings, started: Any, bearer: Bearer
) -> None:
    batch = fast_views._COUNTED_TOGETHER
    roomy = {"rate_limit_user_per_minute": 1000, "rate_limit_ip_per_minute": 1000}

    async with started(settings.model_copy(update=roomy)) as (app, client):
        for _ in range(batch + 3):
            assert (await client.get(DAILY, headers=bearer())).status_code == 200
        registry = app.state.metrics.registry
        between = registry.get_sample_value(
            "tm_fast_view_requests_total", {"result": "served"}
        )
        page = (await client.get("/metrics")).text

    # The first read filled the cache: the rest were answered in front.
    assert between == batch
    assert served(page)["served"] == batch + 2
    histogram = {"route": fast_views.DAILY_PATH, "method": "GET"}
    count = "tm_http_request_duration_seconds_count"
    assert registry.get_sample_value(count, histogram) == batch + 3
