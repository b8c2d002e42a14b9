"""Task documents and events shaped as docs/architecture.md describes them.

Plain factory functions: a test states what matters to it (when, which
channels, open or closed) and gets the rest filled in sensibly.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bson import ObjectId

from tm_domain import reminders, tasks
from tm_domain.events import Due, EventType, TaskEvent
from tm_domain.reminders import Channel, ReminderDraft

PHONE = "+14155550100"
EMAIL = "ada@example.com"


def task_document(
    *,
    send_at: datetime,
    channels: Sequence[str] = (Channel.SMS, Channel.EMAIL),
    phone: str | None = PHONE,
    email: str | None = EMAIL,
    tenant_id: str = "tenant-a",
    user_id: str = "user-1",
    title: str = "Water the plants",
    notes: str | None = "The ferns first",
    planned_at: datetime | None = None,
) -> dict[str, Any]:
    """An open task whose reminder goes out at `send_at` on `channels`.

    The reminder is planned as the API would have planned it at
    `planned_at` (an hour before `send_at` unless given), so a reminder can
    be due in the past as if it had been set before a downtime.
    """
    planned_at = planned_at or send_at - timedelta(hours=1)
    task_date = send_at.date().isoformat()
    draft = ReminderDraft(
        enabled=True,
        channels=tuple(Channel(c) for c in channels),
        send_at=send_at,
        phone=phone,
        email=email,
    )
    reminder = reminders.plan(
        draft,
        task_date=task_date,
        time_of_day=None,
        timezone="UTC",
        previous=None,
        active=True,
        now=planned_at,
    )

    return {
        "_id": ObjectId(),
        "tenantId": tenant_id,
        "userId": user_id,
        "title": title,
        "notes": notes,
        "taskDate": task_date,
        "session": "morning",
        "timeOfDay": None,
        "durationMin": None,
        "priority": "medium",
        "scopeTag": "daily",
        "category": None,
        "tags": [],
        "timezone": "UTC",
        "sortKey": tasks.sort_key(task_date, "morning", None),
        "completed": False,
        "completedAt": None,
        "reminder": reminder,
        "createdAt": planned_at,
        "updatedAt": planned_at,
        "version": 1,
        "writeSeq": 1,
        "deletedAt": None,
        "outbox": [],
        "outboxPending": False,
    }


def task_event(
    doc: Mapping[str, Any],
    *,
    type: EventType = EventType.CREATED,
    occurred_at: datetime | None = None,
) -> TaskEvent:
    """The event a write of `doc` publishes."""
    task_id = str(doc["_id"])
    reminder = doc.get("reminder")
    revision = None if reminder is None else int(reminder["revision"])

    return TaskEvent(
        id=uuid.uuid4().hex,
        type=type,
        task_id=task_id,
        tenant_id=doc["tenantId"],
        user_id=doc["userId"],
        version=int(doc["version"]),
        occurred_at=occurred_at or doc["updatedAt"],
        reminder_revision=revision,
        deliveries=tuple(
            Due(task_id, revision or 0, channel, due_at)
            for channel, due_at in reminders.scheduled(reminder)
        ),
    )


def design_example(**overrides: Any) -> dict[str, Any]:
    """The design document's example create request, in 2030 so it is to come."""
    values: dict[str, Any] = {
        "title": "Morning standup meeting",
        "notes": "Discuss sprint progress",
        "taskDate": "2030-01-15",
        "session": "morning",
        "timeOfDay": "09:00",
        "durationMin": 30,
        "priority": "high",
        "scopeTag": "daily",
        "category": "work",
        "tags": ["meeting", "team"],
        "reminder": {
            "enabled": True,
            "channels": ["sms", "email"],
            "sendAt": "2030-01-15T08:30:00Z",
            "phone": "+14155550100",
            "email": "user@example.com",
        },
    }
    values.update(overrides)
    return values
