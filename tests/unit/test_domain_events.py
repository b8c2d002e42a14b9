"""Task events: the shape they travel in, and that nothing is lost on the way."""

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from tm_domain.events import Due, EventType, TaskEvent

PARIS_SUMMER = timezone(timedelta(hours=2))
NEW_YORK_WINTER = timezone(timedelta(hours=-5))


def an_event(**changes: Any) -> TaskEvent:
    fields: dict[str, Any] = {
        "id": "evt-1",
        "type": EventType.UPDATED,
        "task_id": "task-1",
        "tenant_id": "acme",
        "user_id": "ann",
        "version": 4,
        "occurred_at": datetime(2026, 6, 1, 14, 0, 0, 250000, tzinfo=PARIS_SUMMER),
        "reminder_revision": 2,
        "deliveries": (
            Due("task-1", 2, "sms", datetime(2026, 6, 1, 15, 0, tzinfo=UTC)),
            Due(
                "task-1",
                2,
                "email",
                datetime(2026, 6, 1, 10, 0, tzinfo=NEW_YORK_WINTER),
            ),
        ),
    }
    fields.update(changes)
    return TaskEvent(**fields)


def test_an_event_survives_the_round_trip_through_json() -> None:
    event = an_event()

    wire = json.dumps(event.to_dict())
    back = TaskEvent.from_dict(json.loads(wire))

    assert back == event
    assert back.deliveries[1].key == ("task-1", 2, "email")


def test_instants_keep_their_offset_on_the_round_trip() -> None:
    event = an_event()

    back = TaskEvent.from_dict(event.to_dict())

    assert back.occurred_at.utcoffset() == timedelta(hours=2)
    assert back.occurred_at.microsecond == 250000
    assert back.deliveries[0].due_at.utcoffset() == timedelta(0)
    assert back.deliveries[1].due_at.utcoffset() == timedelta(hours=-5)
    assert back.deliveries[1].due_at == datetime(2026, 6, 1, 15, 0, tzinfo=UTC)


def test_an_event_carries_the_schedule_but_no_recipient() -> None:
    event = an_event()

    assert event.to_dict() == {
        "id": "evt-1",
        "type": "TaskUpdated",
        "taskId": "task-1",
        "tenantId": "acme",
        "userId": "ann",
        "version": 4,
        "occurredAt": "2026-06-01T14:00:00.250000+02:00",
        "reminderRevision": 2,
        "deliveries": [
            {"channel": "sms", "dueAt": "2026-06-01T15:00:00+00:00"},
            {"channel": "email", "dueAt": "2026-06-01T10:00:00-05:00"},
        ],
    }


def test_an_event_of_a_task_without_a_reminder_round_trips() -> None:
    event = an_event(type=EventType.DELETED, reminder_revision=None, deliveries=())

    back = TaskEvent.from_dict(event.to_dict())

    assert back == event
    assert back.to_dict()["reminderRevision"] is None


def test_an_event_sent_without_deliveries_reads_as_none() -> None:
    data = an_event().to_dict()
    del data["deliveries"]

    back = TaskEvent.from_dict(data)

    assert back.deliveries == ()
    assert back.type is EventType.UPDATED
