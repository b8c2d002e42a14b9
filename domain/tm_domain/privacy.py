"""Privacy: what a person's data export holds, and when erased data goes for good.

Erasure is soft first. Every task of the person is deleted the way a single
task is (its reminder cancelled, its `deletedAt` set), which takes it out of
every view at once and makes any claim of its deliveries fail, so a reminder
a worker already holds in memory does not go out either. The documents stay
for a retention window, during which a mistaken request can be investigated
and the export still shows them; a purge after the window removes them.

Every request leaves an audit record. It says who asked, for which account,
when, and how many documents were touched; it never holds a title, note,
phone number or e-mail address, and it outlives the purge.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

EXPORT_FORMAT = "time-manager.personal-data"
EXPORT_FORMAT_VERSION = 1
"""Bumped when a field of the export changes meaning or goes away; new
fields may appear within a version."""

RETENTION_DAYS_DEFAULT = 30


class AuditAction(StrEnum):
    """What an audit record reports; past tense, as events are."""

    EXPORTED = "DataExported"
    ERASED = "DataErased"
    PURGED = "DataPurged"
    REMINDER_RETRIED = "ReminderRetried"


@dataclass(frozen=True)
class Actor:
    """Who made a request: a user with a role, an API key, or the service."""

    id: str
    role: str
    via: str
    """`token`, `apiKey` or `schedule`."""

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "role": self.role, "via": self.via}


SCHEDULE = Actor(id="tm-service", role="system", via="schedule")
"""The actor of the periodic purge."""


def purge_cutoff(now: datetime, *, retention_days: int) -> datetime:
    """Documents deleted at or before this instant may be purged."""
    if retention_days < 0:
        raise ValueError("retention_days must not be negative")

    return now - timedelta(days=retention_days)


def purge_after(deleted_at: datetime, *, retention_days: int) -> datetime:
    """The first instant at which a document deleted at `deleted_at` may go."""
    return deleted_at + timedelta(days=retention_days)


# Counts, ids, instants and these few words: nothing else may enter a record.
_AUDIT_FIELDS = frozenset(
    {
        "_id",
        "action",
        "tenantId",
        "userId",
        "taskId",
        "actor",
        "requestId",
        "at",
        "completedAt",
        "dryRun",
        "retentionDays",
        "purgeAfter",
        "purgedAt",
        "counts",
    }
)


def audit_record(
    action: AuditAction,
    *,
    record_id: str,
    tenant_id: str,
    user_id: str | None,
    actor: Actor,
    at: datetime,
    request_id: str | None = None,
    counts: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An audit record; raises ValueError on a field that could carry content.

    `extra` takes the remaining fields of the record (`taskId`,
    `retentionDays`, `purgeAfter`, `completedAt`); anything else is refused,
    so personal data cannot slip in through a new call site.
    """
    record: dict[str, Any] = {
        "_id": record_id,
        "action": str(action),
        "tenantId": tenant_id,
        "userId": user_id,
        "actor": actor.to_dict(),
        "requestId": request_id,
        "at": at,
        "counts": dict(counts or {}),
        **extra,
    }
    unknown = set(record) - _AUDIT_FIELDS
    if unknown:
        raise ValueError(f"not an audit field: {', '.join(sorted(unknown))}")

    return record
