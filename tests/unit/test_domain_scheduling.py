"""Scheduling rules: backoff, lateness, and the queue of deliveries due soon."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from tm_domain.events import Due
from tm_domain.scheduling import DueQueue, LatenessPolicy, RetryPolicy

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def a_due(
    minutes: float, *, task: str = "task-1", revision: int = 1, channel: str = "sms"
) -> Due:
    return Due(task_id=task, revision=revision, channel=channel, due_at=at(minutes))


# RetryPolicy


@pytest.mark.parametrize("seed", [0, 1, 42, 2026])
def test_each_retry_waits_between_half_and_all_of_the_doubled_base(seed: int) -> None:
    policy = RetryPolicy(max_attempts=20, base=timedelta(seconds=2))
    rng = random.Random(seed)

    delays = [policy.delay(n, rng) for n in range(1, 9)]

    for n, delay in enumerate(delays, start=1):
        full = timedelta(seconds=2) * 2 ** (n - 1)
        assert full / 2 <= delay <= full, f"attempt {n}: {delay}"


@pytest.mark.parametrize("seed", [0, 1, 42, 2026])
def test_the_delay_never_shrinks_from_one_retry_to_the_next(seed: int) -> None:
    policy = RetryPolicy(max_attempts=20)
    rng = random.Random(seed)

    delays = [policy.delay(n, rng) for n in range(1, 9)]

    assert delays == sorted(delays)
    assert delays[-1] > delays[0] * 16


def test_the_spread_comes_from_the_random_source() -> None:
    policy = RetryPolicy(base=timedelta(seconds=1))

    delay = policy.delay(3, random.Random(7))

    assert delay == timedelta(seconds=4) * random.Random(7).uniform(0.5, 1.0)


@pytest.mark.parametrize("seed", [0, 1, 42])
def test_a_long_run_of_failures_waits_no_longer_than_the_cap(seed: int) -> None:
    policy = RetryPolicy(max_attempts=40, cap=timedelta(minutes=5))
    rng = random.Random(seed)

    delays = [policy.delay(n, rng) for n in range(10, 30)]

    assert all(timedelta(minutes=2.5) <= d <= timedelta(minutes=5) for d in delays)


def test_a_delay_without_a_random_source_stays_in_range() -> None:
    policy = RetryPolicy(base=timedelta(seconds=1))

    delays = [policy.delay(0) for _ in range(50)]

    assert all(timedelta(seconds=0.5) <= d <= timedelta(seconds=1) for d in delays)


def test_retries_are_exhausted_at_the_last_allowed_attempt() -> None:
    policy = RetryPolicy(max_attempts=3)

    assert [policy.exhausted(n) for n in range(1, 5)] == [False, False, True, True]


# LatenessPolicy


@pytest.mark.parametrize(
    ("planned", "too_late"),
    [
        (T0 - timedelta(hours=6), False),
        (T0 - timedelta(hours=6, seconds=1), True),
        (T0 - timedelta(minutes=1), False),
        (T0 + timedelta(minutes=1), False),
    ],
    ids=["at-the-limit", "past-the-limit", "a-minute-late", "early"],
)
def test_a_delivery_is_too_late_only_past_the_limit(
    planned: datetime, too_late: bool
) -> None:
    policy = LatenessPolicy(max_lateness=timedelta(hours=6))

    assert policy.too_late(planned, T0) is too_late


# DueQueue


def test_the_earliest_delivery_comes_out_first() -> None:
    queue = DueQueue()
    later, earliest, middle = a_due(9, task="a"), a_due(1, task="b"), a_due(5, task="c")

    queue.put_all([later, earliest, middle])

    assert queue.next_due() == at(1)
    assert queue.pop_due(at(10)) == [earliest, middle, later]


def test_the_same_delivery_put_twice_is_held_once() -> None:
    queue = DueQueue()

    queue.put(a_due(5))
    queue.put(a_due(5))

    assert len(queue) == 1
    assert queue.pop_due(at(10)) == [a_due(5)]
    assert queue.pop_due(at(10)) == []


def test_a_delivery_put_again_earlier_is_due_at_the_new_time() -> None:
    queue = DueQueue()
    queue.put(a_due(10))

    queue.put(a_due(2))

    assert len(queue) == 1
    assert queue.pop_due(at(3)) == [a_due(2)]
    assert queue.pop_due(at(20)) == []
    assert queue.next_due() is None


def test_a_delivery_put_again_later_waits_for_the_new_time() -> None:
    queue = DueQueue()
    queue.put(a_due(2))

    queue.put(a_due(10))

    assert queue.pop_due(at(3)) == []
    assert queue.next_due() == at(10)
    assert queue.pop_due(at(10)) == [a_due(10)]


def test_a_delivery_offered_keeps_the_earlier_of_the_two_times() -> None:
    queue = DueQueue()
    queue.offer(a_due(5))

    queue.offer(a_due(10))
    assert queue.next_due() == at(5)
    queue.offer(a_due(2))

    assert len(queue) == 1
    assert queue.pop_due(at(20)) == [a_due(2)]


def test_only_deliveries_due_by_now_come_out() -> None:
    queue = DueQueue()
    queue.put_all([a_due(1, task="a"), a_due(2, task="b"), a_due(3, task="c")])

    ready = queue.pop_due(at(2))

    assert [d.task_id for d in ready] == ["a", "b"]
    assert len(queue) == 1
    assert queue.next_due() == at(3)


def test_forgetting_a_task_drops_only_its_entries() -> None:
    queue = DueQueue()
    queue.put_all(
        [
            a_due(1, task="a"),
            a_due(2, task="a", channel="email"),
            a_due(3, task="b"),
        ]
    )

    queue.forget_task("a")

    assert len(queue) == 1
    assert queue.next_due() == at(3)
    assert queue.pop_due(at(10)) == [a_due(3, task="b")]


def test_forgetting_a_task_may_keep_its_current_revision() -> None:
    queue = DueQueue()
    current = a_due(4, revision=2)
    queue.put_all(
        [a_due(1, revision=1), a_due(2, revision=1, channel="email"), current]
    )

    queue.forget_task("task-1", keep_revision=2)

    assert queue.pop_due(at(10)) == [current]


def test_forgetting_a_task_the_queue_does_not_hold_changes_nothing() -> None:
    queue = DueQueue()
    queue.put(a_due(1))

    queue.forget_task("someone-else")

    assert len(queue) == 1


def test_next_due_skips_entries_that_were_forgotten_or_moved() -> None:
    queue = DueQueue()
    queue.put_all([a_due(1, task="a"), a_due(2, task="b"), a_due(6, task="c")])

    queue.forget_task("a")
    queue.put(a_due(8, task="b"))

    assert queue.next_due() == at(6)


def test_an_empty_queue_has_nothing_due() -> None:
    queue = DueQueue()

    assert (len(queue), queue.next_due(), queue.pop_due(at(60))) == (0, None, [])
