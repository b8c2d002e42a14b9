"""The worker's intake: events decoded, bad ones skipped, outcomes reported."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import structlog

from tm_domain.delivery import (
    Claim,
    Outcome,
    ReminderEngine,
    Result,
    Settlement,
)
from tm_domain.events import Due, EventType, TaskEvent
from tm_streams.app import Delivery, create_app, decode_event, report
from tm_streams.settings import StreamsSettings


class QuietStore:
    """A store with nothing due: the engine under test only queues."""

    async def pending(self, *, until: datetime, limit: int) -> list[Due]:
        return []

    async def claim(
        self, due: Due, *, now: datetime, lease_until: datetime, owner: str
    ) -> Claim | None:
        return None

    async def settle(self, claim: Claim, settlement: Settlement, *, owner: str) -> None:
        return None

    async def expire_leases(self, *, now: datetime, error: str) -> int:
        return 0


def event_bytes(now: datetime, **changes: object) -> bytes:
    event = TaskEvent(
        id="e1",
        type=EventType.CREATED,
        task_id="t1",
        tenant_id="tenant-a",
        user_id="user-1",
        version=1,
        occurred_at=now,
        reminder_revision=1,
        deliveries=(Due("t1", 1, "sms", now + timedelta(minutes=1)),),
    )
    data = {**event.to_dict(), **changes}
    return json.dumps(data).encode()


def delivery_with_engine(now: datetime) -> Delivery:
    delivery = Delivery(StreamsSettings())
    delivery.engine = ReminderEngine(QuietStore(), {}, owner="test", clock=lambda: now)
    return delivery


def test_a_sound_event_is_decoded(now: datetime) -> None:
    event = decode_event(event_bytes(now))

    assert event.task_id == "t1"
    assert event.deliveries[0].due_at == now + timedelta(minutes=1)


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"[]",
        b'"text"',
        b"{}",
        b'{"id": "e1"}',
    ],
    ids=["garbage", "list", "string", "empty", "partial"],
)
def test_a_malformed_event_is_refused_with_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError, match=r"task event|Expecting|JSON"):
        decode_event(payload)


def test_an_event_with_an_unknown_type_is_refused(now: datetime) -> None:
    with pytest.raises(ValueError):
        decode_event(event_bytes(now, type="TaskExploded"))


def test_an_instant_without_utc_offset_is_refused(now: datetime) -> None:
    naive = now.replace(tzinfo=None).isoformat()

    with pytest.raises(ValueError, match="no UTC offset"):
        decode_event(event_bytes(now, deliveries=[{"channel": "sms", "dueAt": naive}]))


def test_delivery_takes_a_sound_event_into_the_engine_queue(now: datetime) -> None:
    delivery = delivery_with_engine(now)

    delivery.accept(event_bytes(now))

    assert delivery.engine is not None
    assert len(delivery.engine.queue) == 1


def test_delivery_skips_a_malformed_event_with_a_warning(now: datetime) -> None:
    delivery = delivery_with_engine(now)

    with structlog.testing.capture_logs() as captured:
        delivery.accept(b"{not json")

    assert delivery.engine is not None
    assert len(delivery.engine.queue) == 0
    assert [(c["event"], c["log_level"]) for c in captured] == [
        ("task event skipped", "warning")
    ]


async def test_the_agent_goes_on_after_a_malformed_event(now: datetime) -> None:
    delivery = delivery_with_engine(now)
    app = create_app(StreamsSettings(), delivery=delivery)
    agent = next(iter(app.agents.values()))

    async def stream() -> AsyncIterator[bytes]:
        for payload in (
            b"{not json",
            event_bytes(now, deliveries=[]),
            event_bytes(now),
        ):
            yield payload

    # NB: the agent's own function over a plain stream; Faust's test context
    # builds a consumer thread whose event loop it never closes.
    await agent.fun(stream())

    assert delivery.engine is not None
    assert len(delivery.engine.queue) == 1


def test_the_app_is_named_and_aimed_as_configured() -> None:
    settings = StreamsSettings(
        kafka_bootstrap="127.0.0.1:9092,127.0.0.1:9093",
        kafka_task_events_topic="events-x",
        kafka_task_events_partitions=3,
        streams_web_port=7001,
    )

    app = create_app(settings)

    assert app.conf.id == "tm-streams"
    assert [str(url) for url in app.conf.broker] == [
        "kafka://127.0.0.1:9092",
        "kafka://127.0.0.1:9093",
    ]
    assert app.conf.web_bind == "127.0.0.1"
    assert app.conf.web_port == 7001
    [agent] = app.agents.values()
    assert agent.channel.get_topic_name() == "events-x"
    assert agent.channel.partitions == 3


def test_an_outcome_is_reported_in_one_info_line_without_recipient(
    now: datetime,
) -> None:
    outcome = Outcome(
        due=Due("t1", 2, "sms", now),
        tenant_id="tenant-a",
        settlement=Settlement(
            Result.SENT,
            at=now,
            attempted=True,
            provider_message_id="SM1",
            lateness=timedelta(milliseconds=42),
        ),
        attempts=1,
    )

    with structlog.testing.capture_logs() as captured:
        report(outcome)

    assert captured == [
        {
            "event": "delivery",
            "log_level": "info",
            "tenant_id": "tenant-a",
            "task_id": "t1",
            "revision": 2,
            "channel": "sms",
            "result": "sent",
            "attempts": 1,
            "lateness_ms": 42,
            "provider_message_id": "SM1",
            "error": None,
        }
    ]


def test_a_retry_is_reported_at_debug(now: datetime) -> None:
    outcome = Outcome(
        due=Due("t1", 1, "email", now),
        tenant_id="tenant-a",
        settlement=Settlement(
            Result.RETRY,
            at=now,
            attempted=True,
            error="sendgrid HTTP 503",
            next_due_at=now + timedelta(seconds=1),
        ),
        attempts=1,
    )

    with structlog.testing.capture_logs() as captured:
        report(outcome)

    assert [(c["event"], c["log_level"]) for c in captured] == [
        ("delivery retry", "debug")
    ]
