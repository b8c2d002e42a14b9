"""Rate limits, tenant quotas and tenants' standing, on the real Redis and MongoDB.

Time is the limiter's clock, moved by the test: windows of an hour or a day
pass without waiting.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import CLOSED_PORT, TASKS
from tm_adapters import redis_state
from tm_domain import tenants
from tm_service.app import SharedState
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

Bearer = Callable[..., dict[str, str]]
ADMIN = "/api/v1/admin"


class Clock:
    """Seconds since the epoch, moved only by the test."""

    def __init__(self) -> None:
        self.now = datetime(2030, 1, 15, 9, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def limited(settings: ServiceSettings, **limits: Any) -> ServiceSettings:
    return settings.model_copy(update=limits)


def shared_with(
    settings: ServiceSettings, clock: Clock
) -> tuple[redis_state.RedisLink, SharedState]:
    """The Redis limiter and the daily view's gate on the test's clock, and
    the rest on Redis as usual."""
    link = redis_state.RedisLink(settings.redis_url, timeout_s=1, retry_s=0)
    prefix = settings.redis_key_prefix
    limiter = redis_state.RedisRateLimiter(link, prefix=prefix, clock=clock)
    gate = redis_state.RedisViewGate(link, prefix=prefix, clock=clock)
    return link, SharedState(limiter=limiter, view_gate=gate)


async def register(
    mongo: Any,
    settings: ServiceSettings,
    tenant_id: str,
    *,
    active: bool = True,
    key: str | None = None,
    **quotas: int,
) -> None:
    """Register a tenant as the operator does."""
    await mongo[settings.mongodb_database]["tenants"].insert_one(
        {
            "_id": tenant_id,
            "displayName": tenant_id,
            "quotas": {
                "apiCallsPerMinute": quotas.get("calls", 60),
                "tasksPerHour": quotas.get("hour", 100),
                "tasksPerDay": quotas.get("day", 1000),
            },
            "dataRetentionDays": 30,
            "active": active,
            "apiKeySha256": None if key is None else tenants.digest(key),
        }
    )


def metric(page: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(page):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


async def test_first_call_past_the_user_limit_is_refused_until_its_window_passes(
    settings: ServiceSettings, started: Any, bearer: Bearer
) -> None:
    clock = Clock()
    link, shared = shared_with(settings, clock)
    chosen = limited(settings, rate_limit_user_per_minute=3)
    daily = f"{TASKS}/daily?date=2030-01-15"

    async with started(chosen, shared=shared) as (_, client):
        allowed = [await client.get(daily, headers=bearer()) for _ in range(3)]
        refused = await client.get(daily, headers=bearer())
        other_user = await client.get(daily, headers=bearer(sub="user-b"))
        clock.advance(60)
        after_window = await client.get(daily, headers=bearer())
        page = (await client.get("/metrics")).text
    await link.close()

    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert allowed[0].headers["RateLimit-Policy"] == '"user";q=3;w=60'
    assert allowed[0].headers["RateLimit"] == '"user";r=2;t=20'
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert error["requestId"] == refused.headers["X-Request-ID"]
    assert refused.headers["Retry-After"] == "20"
    assert refused.headers["RateLimit"] == '"user";r=0;t=60'
    assert other_user.status_code == 200
    assert after_window.status_code == 200
    assert metric(page, "tm_rate_limit_rejections_total", scope="user") == 1


async def test_tenant_quotas_replace_the_defaults_and_replicas_share_the_count(
    settings: ServiceSettings, started: Any, bearer: Bearer, mongo: Any
) -> None:
    await register(mongo, settings, "tenant-1", calls=2)
    daily = f"{TASKS}/daily?date=2030-01-15"

    async with started(settings) as (_, one), started(settings) as (_, two):
        first = await one.get(daily, headers=bearer())
        second = await two.get(daily, headers=bearer())
        third = await one.get(daily, headers=bearer())
        unregistered = await two.get(daily, headers=bearer(tenant="tenant-2"))

    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 429
    assert third.headers["RateLimit-Policy"] == '"user";q=2;w=60'
    assert unregistered.status_code == 200
    assert unregistered.headers["RateLimit-Policy"] == '"user";q=60;w=60'


async def test_task_creations_are_held_to_the_hourly_and_daily_quotas(
    settings: ServiceSettings,
    started: Any,
    bearer: Bearer,
    mongo: Any,
    example: Any,
) -> None:
    await register(mongo, settings, "tenant-1", hour=2, day=3)
    clock = Clock()
    link, shared = shared_with(settings, clock)

    async with started(settings, shared=shared) as (_, client):

        async def create() -> Any:
            return await client.post(TASKS, json=example(), headers=bearer())

        hour = [(await create()).status_code for _ in range(3)]
        clock.advance(3600)
        next_hour = (await create()).status_code
        day_spent = await create()
        clock.advance(86_400)
        next_day = (await create()).status_code
        listed = await client.get(f"{TASKS}/daily?date=2030-01-15", headers=bearer())
    await link.close()

    assert hour == [201, 201, 429]
    assert next_hour == 201
    assert day_spent.status_code == 429
    assert day_spent.headers["RateLimit"].startswith('"tasks-day";r=0;')
    assert '"tasks-hour";q=2;w=3600' in day_spent.headers["RateLimit-Policy"]
    assert next_day == 201
    # Refused creations created nothing.
    assert len(listed.json()["data"]) == 4


async def test_a_client_address_is_limited_before_it_authenticates(
    settings: ServiceSettings, started: Any
) -> None:
    chosen = limited(settings, rate_limit_ip_per_minute=2, rate_limit_ip_burst=3)

    async with started(chosen) as (_, client):
        answers = [(await client.get(f"{TASKS}/x")).status_code for _ in range(4)]
        health = await client.get("/healthz")
        page = (await client.get("/metrics")).text

    assert answers == [401, 401, 401, 429]
    assert health.status_code == 200
    assert metric(page, "tm_rate_limit_rejections_total", scope="ip") == 1


async def test_without_redis_the_limits_fail_open_and_say_so(
    settings: ServiceSettings, started: Any, bearer: Bearer
) -> None:
    chosen = limited(
        settings,
        redis_url=f"redis://{CLOSED_PORT}/0",
        rate_limit_user_per_minute=1,
        rate_limit_ip_burst=1,
        rate_limit_ip_per_minute=1,
    )

    async with started(chosen) as (_, client):
        answers = [
            (await client.get(f"{TASKS}/daily?date=2030-01-15", headers=bearer()))
            for _ in range(3)
        ]
        page = (await client.get("/metrics")).text

    assert [a.status_code for a in answers] == [200, 200, 200]
    assert "RateLimit" not in answers[0].headers
    assert metric(page, "tm_redis_unavailable_total", component="limiter") >= 3


async def test_a_deactivated_tenant_is_refused_and_registration_can_be_required(
    settings: ServiceSettings, started: Any, bearer: Bearer, mongo: Any
) -> None:
    await register(mongo, settings, "gone", active=False)
    await register(mongo, settings, "kept")
    required = limited(settings, require_tenant_registration=True)
    daily = f"{TASKS}/daily?date=2030-01-15"

    async with started(settings) as (_, lenient), started(required) as (_, strict):
        deactivated = await lenient.get(daily, headers=bearer(tenant="gone"))
        unknown_lenient = await lenient.get(daily, headers=bearer(tenant="new"))
        unknown_strict = await strict.get(daily, headers=bearer(tenant="new"))
        registered_strict = await strict.get(daily, headers=bearer(tenant="kept"))

    assert deactivated.status_code == 403
    assert deactivated.json()["error"]["code"] == "TENANT_INACTIVE"
    assert unknown_lenient.status_code == 200
    assert unknown_strict.status_code == 403
    assert unknown_strict.json()["error"]["code"] == "TENANT_INACTIVE"
    assert registered_strict.status_code == 200


async def test_a_tenant_api_key_is_checked_against_its_digest_and_its_standing(
    settings: ServiceSettings, started: Any, mongo: Any
) -> None:
    key = tenants.new_api_key("acme")
    retired_key = tenants.new_api_key("retired")
    await register(mongo, settings, "acme", key=key)
    await register(mongo, settings, "retired", key=retired_key, active=False)
    url = f"{ADMIN}/tenants"

    async with started(settings) as (_, client):
        accepted = await client.get(url, headers={"X-API-Key": key})
        forged = await client.get(url, headers={"X-API-Key": key[:-4] + "AAAA"})
        retired = await client.get(url, headers={"X-API-Key": retired_key})

    assert accepted.status_code == 200, accepted.text
    assert [t["tenantId"] for t in accepted.json()["data"]] == ["acme"]
    assert forged.status_code == 401
    assert retired.status_code == 403
    assert retired.json()["error"]["code"] == "TENANT_INACTIVE"
