"""The worker's counts: schedules and cancellations from events, outcomes, lag."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import generate_latest

from tm_domain.delivery import FailureReason, Outcome, Result, Settlement
from tm_domain.events import Due, EventType, TaskEvent
from tm_streams.metrics import Metrics, consumer_lag


def event(
    now: datetime,
    kind: EventType = EventType.CREATED,
    *,
    version: int = 1,
    revision: int = 1,
    channels: tuple[str, ...] = ("sms", "email"),
) -> TaskEvent:
    return TaskEvent(
        id=f"e{version}",
        type=kind,
        task_id="t1",
        tenant_id="acme",
        user_id="u1",
        version=version,
        occurred_at=now,
        reminder_revision=revision,
        deliveries=tuple(
            Due("t1", revision, c, now + timedelta(hours=1)) for c in channels
        ),
    )


def count(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def outcome(now: datetime, result: Result, **fields: object) -> Outcome:
    settlement = Settlement(result, at=now, attempted=True, **fields)  # type: ignore[arg-type]
    return Outcome(Due("t1", 1, "sms", now), "acme", settlement, attempts=1)


def test_a_schedule_is_counted_once_however_often_its_event_comes(
    now: datetime,
) -> None:
    metrics = Metrics()

    metrics.on_event(event(now))
    metrics.on_event(event(now))
    metrics.on_event(event(now, EventType.UPDATED, version=2, revision=2))

    assert count(metrics, "tm_reminders_scheduled_total", channel="sms") == 2
    assert count(metrics, "tm_reminders_scheduled_total", channel="email") == 2
    assert count(metrics, "tm_reminders_cancelled_total", channel="sms") == 0


def test_completion_cancels_what_was_open_and_an_older_event_changes_nothing(
    now: datetime,
) -> None:
    metrics = Metrics()
    metrics.on_event(event(now))
    metrics.on_outcome(outcome(now, Result.SENT, lateness=timedelta(seconds=0.2)))

    metrics.on_event(event(now, EventType.COMPLETED, version=2, channels=()))
    metrics.on_event(event(now, version=1))

    assert count(metrics, "tm_reminders_cancelled_total", channel="email") == 1
    assert count(metrics, "tm_reminders_cancelled_total", channel="sms") == 0
    assert count(metrics, "tm_reminders_sent_total", channel="sms") == 1
    assert count(metrics, "tm_delivery_lateness_seconds_count", channel="sms") == 1


def test_failures_are_counted_by_reason_and_retries_not_at_all(now: datetime) -> None:
    metrics = Metrics()

    metrics.on_outcome(outcome(now, Result.RETRY))
    metrics.on_outcome(outcome(now, Result.FAILED, reason=FailureReason.REJECTED))
    metrics.on_outcome(outcome(now, Result.FAILED))

    assert (
        count(metrics, "tm_reminders_failed_total", channel="sms", reason="rejected")
        == 1
    )
    assert (
        count(metrics, "tm_reminders_failed_total", channel="sms", reason="unknown")
        == 1
    )
    assert count(metrics, "tm_reminders_sent_total", channel="sms") == 0


@dataclass(frozen=True)
class TP:
    topic: str
    partition: int


class FakeConsumer:
    def __init__(self) -> None:
        self.ends = {TP("task-events", 0): 10, TP("task-events", 1): None}
        self.positions = {TP("task-events", 0): 7, TP("task-events", 1): 3}

    def assignment(self) -> set[TP]:
        return set(self.ends)

    def highwater(self, tp: TP) -> int | None:
        return self.ends[tp]

    async def position(self, tp: TP) -> int | None:
        return self.positions[tp]


async def test_lag_is_the_end_less_the_position_of_each_known_partition() -> None:
    metrics = Metrics()

    metrics.set_lag(await consumer_lag(FakeConsumer()))
    page = generate_latest(metrics.registry).decode()

    assert 'tm_consumer_lag{partition="0",topic="task-events"} 3.0' in page
    assert 'partition="1"' not in page
