"""Task events: what happened to a task, as published for the reminder worker.

An event carries the task's version and the schedule of its open deliveries,
never a phone number or e-mail address: the worker reads recipients from the
store at send time, so events can sit in a log without holding personal data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    CREATED = "TaskCreated"
    UPDATED = "TaskUpdated"
    COMPLETED = "TaskCompleted"
    DELETED = "TaskDeleted"


@dataclass(frozen=True)
class Due:
    """One delivery waiting to go out: a channel of a reminder revision."""

    task_id: str
    revision: int
    channel: str
    due_at: datetime

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.task_id, self.revision, self.channel)


@dataclass(frozen=True)
class TaskEvent:
    id: str
    type: EventType
    task_id: str
    tenant_id: str
    user_id: str
    version: int
    occurred_at: datetime
    reminder_revision: int | None = None
    deliveries: tuple[Due, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": str(self.type),
            "taskId": self.task_id,
            "tenantId": self.tenant_id,
            "userId": self.user_id,
            "version": self.version,
            "occurredAt": self.occurred_at.isoformat(),
            "reminderRevision": self.reminder_revision,
            "deliveries": [
                {"channel": d.channel, "dueAt": d.due_at.isoformat()}
                for d in self.deliveries
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskEvent:
        task_id = str(data["taskId"])
        revision = data.get("reminderRevision")
        deliveries = tuple(
            Due(
                task_id=task_id,
                revision=int(revision or 0),
                channel=str(d["channel"]),
                due_at=datetime.fromisoformat(d["dueAt"]),
            )
            for d in data.get("deliveries") or ()
        )
        return cls(
            id=str(data["id"]),
            type=EventType(data["type"]),
            task_id=task_id,
            tenant_id=str(data["tenantId"]),
            user_id=str(data["userId"]),
            version=int(data["version"]),
            occurred_at=datetime.fromisoformat(data["occurredAt"]),
            reminder_revision=None if revision is None else int(revision),
            deliveries=deliveries,
        )
