"""The rate limit rule: a generic cell rate algorithm on plain numbers."""

from __future__ import annotations

import pytest

from tm_domain import limits

PER_MINUTE = limits.Limit("user", quota=60, window_s=60)
BURSTY = limits.Limit("ip", quota=100, window_s=60, burst=200)
HOURLY = limits.Limit("tasks-hour", quota=100, window_s=3600)
DAILY = limits.Limit("tasks-day", quota=1000, window_s=86_400)


def spend(limit: limits.Limit, calls: int, *, now_ms: float = 0.0) -> list[bool]:
    """Make `calls` calls at one instant; whether each was allowed."""
    tat: float | None = None
    allowed = []
    for _ in range(calls):
        verdict, [tat] = limits.evaluate([limit], [tat], now_ms=now_ms)
        allowed.append(verdict.allowed)
    return allowed


def test_a_fresh_bucket_allows_its_quota_at_once_and_refuses_the_next() -> None:
    allowed = spend(PER_MINUTE, 61)

    assert allowed == [True] * 60 + [False]


def test_a_burst_allows_more_at_once_than_the_pace() -> None:
    allowed = spend(BURSTY, 201)

    assert allowed.count(True) == 200
    assert allowed[-1] is False


def test_a_refusal_says_when_to_come_back_and_that_time_is_enough() -> None:
    tat = 60_000.0  # the bucket is empty at instant 0

    refused, kept = limits.evaluate([PER_MINUTE], [tat], now_ms=0)
    back, _ = limits.evaluate(
        [PER_MINUTE], kept, now_ms=refused.decisions[0].retry_after_s * 1000
    )

    assert not refused.allowed
    assert refused.decisions[0].retry_after_s == 1
    assert refused.decisions[0].reset_s == 60
    assert kept == [tat]
    assert back.allowed


def test_after_a_whole_window_the_bucket_is_full_again() -> None:
    _, [tat] = limits.evaluate([HOURLY], [None], now_ms=0, cost=100)

    verdict, _ = limits.evaluate([HOURLY], [tat], now_ms=3_600_000)

    assert verdict.allowed
    assert verdict.decisions[0].remaining == 99


def test_buckets_are_taken_all_or_none() -> None:
    hour_tat = 0.0
    day_tat = 86_400_000.0  # the day is spent

    verdict, kept = limits.evaluate(
        [HOURLY, DAILY], [hour_tat, day_tat], now_ms=0, cost=1
    )

    assert not verdict.allowed
    assert kept == [hour_tat, day_tat]
    assert verdict.binding is not None
    assert verdict.binding.limit is DAILY
    assert verdict.decisions[0].allowed


def test_the_headers_name_the_policy_and_what_is_left() -> None:
    verdict, _ = limits.evaluate([PER_MINUTE], [None], now_ms=0)

    decision = verdict.decisions[0]
    assert PER_MINUTE.policy == '"user";q=60;w=60'
    assert decision.header() == '"user";r=59;t=1'
    assert verdict.binding is decision


def test_an_uneven_interval_still_allows_exactly_the_quota() -> None:
    seven = limits.Limit("user", quota=7, window_s=60)

    assert spend(seven, 8) == [True] * 7 + [False]


@pytest.mark.parametrize(
    ("quota", "window", "burst"), [(0, 60, None), (1, 0, None), (1, 1, 0)]
)
def test_a_limit_without_room_is_refused(
    quota: int, window: int, burst: int | None
) -> None:
    with pytest.raises(ValueError):
        limits.Limit("x", quota=quota, window_s=window, burst=burst)


def test_a_verdict_without_buckets_binds_nothing() -> None:
    assert limits.Verdict(()).binding is None
    assert limits.Verdict(()).allowed


@pytest.mark.parametrize("quota", [7, 13, 60, 7000, 100_000, 1_000_000])
@pytest.mark.parametrize("now_ms", [1_796_438_173_866.2765, 1_900_000_000_000.0])
def test_a_bucket_loses_no_unit_to_the_time_of_day(quota: int, now_ms: float) -> None:
    # Times since the epoch in milliseconds carry float error near a
    # quarter of a microsecond: an interval such as 60000/7 ms added to one
    # and taken off again had come back short, and a full bucket said it had
    # a unit less than it had.
    limit = limits.Limit("user", quota=quota, window_s=60)

    first, [stored] = limits.evaluate([limit], [None], now_ms=now_ms)
    allowed = spend(limit, quota + 1, now_ms=now_ms) if quota <= 60 else []

    assert first.allowed
    assert first.decisions[0].remaining == quota - 1
    assert stored == pytest.approx(now_ms + limit.interval_ms, abs=1e-3)
    assert allowed == ([True] * quota + [False] if quota <= 60 else [])


def test_a_full_buckets_decision_is_the_same_object_every_time() -> None:
    limit = limits.Limit("user", quota=60, window_s=60)

    first, _ = limits.evaluate([limit], [None], now_ms=1_000.0)
    later, _ = limits.evaluate([limit], [2_000.5], now_ms=9_000_000.25)

    assert first.decisions[0] is later.decisions[0]
    assert first.decisions[0].remaining == 59
