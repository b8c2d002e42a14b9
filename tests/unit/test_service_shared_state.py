"""The in-process limiter, view cache and idempotency store, and a service on
them alone: no Redis, as on a single machine."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_service_fakes import (
    MemoryTaskStore,
    RecordingPublisher,
    bearer,
    body,
    serve,
    settings,
)
from tm_adapters import memory_state
from tm_domain import caching, limits
from tm_service.app import SharedState, create_app

TASKS = "/api/v1/visitor/time/tasks"
USER = limits.Limit("user", quota=2, window_s=60)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def memory_shared(clock: Clock | None = None) -> SharedState:
    return SharedState(
        limiter=memory_state.MemoryRateLimiter(clock=clock or Clock()),
        view_cache=memory_state.MemoryViewCache(),
        idempotency=memory_state.MemoryIdempotencyStore(),
    )


async def test_memory_limiter_refuses_past_the_quota_until_time_passes() -> None:
    clock = Clock()
    limiter = memory_state.MemoryRateLimiter(clock=clock)
    bucket = [limits.Bucket("u", USER)]

    answers = [(await limiter.acquire(bucket)).allowed for _ in range(3)]
    clock.now += 30
    later = await limiter.acquire(bucket)

    assert answers == [True, True, False]
    assert later.allowed


async def test_memory_cache_keeps_a_view_only_under_the_stamp_it_was_read_at() -> None:
    clock = Clock()
    cache = memory_state.MemoryViewCache(clock=clock)

    before = await cache.read("k")
    await cache.invalidate(["k"])
    stale = await cache.fill("k", b"old", stamp=before.stamp, ttl_s=10)
    fresh = await cache.read("k")
    kept = await cache.fill("k", b"new", stamp=fresh.stamp, ttl_s=10)
    hit = await cache.read("k")
    clock.now += 11
    expired = await cache.read("k")

    assert (stale, kept) == (False, True)
    assert hit.body == b"new"
    assert expired.body is None


async def test_memory_idempotency_claims_once_and_replays_the_answer() -> None:
    clock = Clock()
    keys = memory_state.MemoryIdempotencyStore(clock=clock)
    answer = caching.Answer(200, b"{}")

    first = await keys.begin("k", "f1", lock_s=5)
    running = await keys.begin("k", "f1", lock_s=5)
    await keys.finish("k", "f1", answer, ttl_s=60)
    done = await keys.begin("k", "f1", lock_s=5)
    mismatch = await keys.begin("k", "f2", lock_s=5)
    await keys.abandon("k")
    again = await keys.begin("k", "f2", lock_s=5)
    clock.now += 6
    lapsed = await keys.begin("k", "f3", lock_s=5)

    assert first.claim is caching.Claim.STARTED
    assert running.claim is caching.Claim.RUNNING
    assert done == caching.Begun(caching.Claim.DONE, answer)
    assert mismatch.claim is caching.Claim.MISMATCH
    assert again.claim is caching.Claim.STARTED
    assert lapsed.claim is caching.Claim.STARTED


async def test_a_service_on_memory_alone_neither_needs_nor_checks_redis() -> None:
    app = create_app(
        settings(rate_limit_tasks_per_hour=1),
        store=MemoryTaskStore(),
        publisher=RecordingPublisher(),
        shared=memory_shared(),
    )

    async with serve(app) as http:
        created = await http.post(TASKS, json=body(), headers=bearer())
        refused = await http.post(TASKS, json=body(), headers=bearer())
        first = await http.get(f"{TASKS}/daily?date=2030-01-15", headers=bearer())
        second = await http.get(f"{TASKS}/daily?date=2030-01-15", headers=bearer())
        ready = await http.get("/readyz")
        page = (await http.get("/metrics")).text

    assert created.status_code == 201
    assert refused.status_code == 429
    assert first.json()["data"] == second.json()["data"]
    assert len(first.json()["data"]) == 1
    assert ready.json()["data"] == {"kafka": "up"}
    assert 'tm_cache_requests_total{result="hit",view="daily"} 1.0' in page


async def test_a_batch_on_memory_is_replayed_for_its_key() -> None:
    app = create_app(
        settings(),
        store=MemoryTaskStore(),
        publisher=RecordingPublisher(),
        shared=memory_shared(),
    )
    batch = {"operations": [{"op": "create", "task": body()}]}
    headers = {**bearer(), "Idempotency-Key": "abc"}

    async with serve(app) as http:
        first = await http.post(f"{TASKS}/batch", json=batch, headers=headers)
        retry = await http.post(f"{TASKS}/batch", json=batch, headers=headers)
        bad_key = await http.post(
            f"{TASKS}/batch", json=batch, headers={**bearer(), "Idempotency-Key": " "}
        )

    assert first.status_code == 200
    assert retry.content == first.content
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert bad_key.status_code == 400


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [("https://app.example.com", True), ("https://evil.example.net", False)],
)
async def test_cors_answers_only_the_configured_origins(
    origin: str, allowed: bool
) -> None:
    app = create_app(
        settings(cors_origins="https://app.example.com, http://localhost:3000"),
        store=MemoryTaskStore(),
        publisher=RecordingPublisher(),
        shared=memory_shared(),
    )
    preflight: dict[str, Any] = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,idempotency-key",
    }

    async with serve(app) as http:
        answer = await http.options(f"{TASKS}/batch", headers=preflight)
        simple = await http.get("/healthz", headers={"Origin": origin})

    if allowed:
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == origin
        assert "RateLimit" in simple.headers["access-control-expose-headers"]
    else:
        assert answer.status_code == 400
        assert "access-control-allow-origin" not in simple.headers


def test_an_origin_that_is_not_one_is_refused() -> None:
    with pytest.raises(ValueError, match="not an origin"):
        settings(cors_origins="app.example.com")


async def test_a_keyed_batch_with_numbers_beyond_64_bits_fails_only_its_operation() -> (
    None
):
    app = create_app(
        settings(),
        store=MemoryTaskStore(),
        publisher=RecordingPublisher(),
        shared=memory_shared(),
    )
    huge = {**body(), "version": 2**70}
    batch = {"operations": [{"op": "update", "id": "abc", "task": huge}]}

    async with serve(app) as http:
        answer = await http.post(
            f"{TASKS}/batch",
            json=batch,
            headers={**bearer(), "Idempotency-Key": "big-1"},
        )

    assert answer.status_code == 200
    [result] = answer.json()["data"]["results"]
    assert result["status"] == 400
    assert result["error"]["details"][0]["field"] == "task.version"
