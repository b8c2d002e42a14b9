"""The daily view's gate on the real Redis: limits and the entry in one trip."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from tm_adapters import redis_state
from tm_domain import limits
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

NOW_S = 1_900_000_000.0
IP = limits.Limit("ip", quota=100, window_s=60, burst=2)
USER = limits.Limit("user", quota=60, window_s=60)


@pytest.fixture
async def link(settings: ServiceSettings) -> AsyncIterator[redis_state.RedisLink]:
    found = redis_state.RedisLink(settings.redis_url, timeout_s=2, retry_s=0)
    yield found
    await found.close()


def stages(address: str = "10.0.0.1") -> list[list[limits.Bucket]]:
    return [
        [limits.Bucket(f"ip:{address}", IP)],
        [limits.Bucket("user:{t/u}", USER)],
    ]


async def test_a_prepared_admission_takes_the_limits_and_reads_the_entry_each_time(
    link: redis_state.RedisLink, settings: ServiceSettings
) -> None:
    prefix = settings.redis_key_prefix
    gate = redis_state.RedisViewGate(link, prefix=prefix, clock=lambda: NOW_S)
    await link.client.set(f"{prefix}view:v", b'{"tasks":[]}')
    prepared = gate.prepare("view:v", stages())

    first = await prepared.admit()
    second = await prepared.admit()
    third = await prepared.admit()

    assert first.cached is not None and first.cached.body == b'{"tasks":[]}'
    assert [v.binding.remaining for v in first.verdicts if v.binding] == [1, 59]
    assert [v.binding.remaining for v in second.verdicts if v.binding] == [0, 58]
    # The address's burst of two is spent: the user's bucket is not touched.
    assert third.cached is None
    assert len(third.verdicts) == 1 and not third.verdicts[0].allowed
    spent = await link.client.get(f"{prefix}rl:user:{{t/u}}")
    assert float(spent) == pytest.approx(NOW_S * 1000 + 2 * USER.interval_ms)


async def test_without_limits_the_entry_alone_is_read(
    link: redis_state.RedisLink, settings: ServiceSettings
) -> None:
    prefix = settings.redis_key_prefix
    gate = redis_state.RedisViewGate(link, prefix=prefix)
    await link.client.set(f"{prefix}view:w:stamp", b"7")

    admission = await gate.admit("view:w", [])

    assert list(admission.verdicts) == []
    assert admission.cached is not None
    assert (admission.cached.body, admission.cached.stamp) == (None, "7")


async def test_a_redis_that_forgot_its_scripts_runs_them_again(
    link: redis_state.RedisLink, settings: ServiceSettings
) -> None:
    prefix = settings.redis_key_prefix
    gate = redis_state.RedisViewGate(link, prefix=prefix, clock=lambda: NOW_S)
    limiter = redis_state.RedisRateLimiter(link, prefix=prefix, clock=lambda: NOW_S)
    await link.client.set(f"{prefix}view:x", b"{}")
    prepared = gate.prepare("view:x", stages("10.0.0.2"))
    await prepared.admit()

    # As after a restart of Redis without persistence.
    await forget_scripts(settings)
    admitted = await prepared.admit()
    await forget_scripts(settings)
    verdict = await limiter.acquire([limits.Bucket("user:{t/v}", USER)])

    assert admitted.cached is not None and admitted.cached.body == b"{}"
    assert [v.binding.remaining for v in admitted.verdicts if v.binding] == [0, 58]
    assert verdict.allowed


async def forget_scripts(settings: ServiceSettings) -> None:
    async with redis.Redis.from_url(settings.redis_url) as other:
        await other.script_flush()


async def test_the_script_loses_no_unit_to_the_time_of_day(
    link: redis_state.RedisLink, settings: ServiceSettings
) -> None:
    # A time with a fraction of a millisecond, and an interval of 60000/7 ms:
    # the script and `limits.decide` count alike, every unit of the bucket.
    prefix = settings.redis_key_prefix
    now_s = 1_796_438_173.8662765
    gate = redis_state.RedisViewGate(link, prefix=prefix, clock=lambda: now_s)
    odd = limits.Limit("user", quota=7, window_s=60)
    prepared = gate.prepare("view:y", [[limits.Bucket("user:{t/odd}", odd)]])

    admissions = [await prepared.admit() for _ in range(8)]

    verdicts = [a.verdicts[-1] for a in admissions]
    assert [v.allowed for v in verdicts] == [True] * 7 + [False]
    assert [v.decisions[0].remaining for v in verdicts] == [6, 5, 4, 3, 2, 1, 0, 0]
