"""Reminders: when one is due, which deliveries it makes, and what state it is in.

A reminder is embedded in its task. It is due either at an absolute instant
(`sendAt`) or `offsetMin` minutes before the task's start, the task's date and
time of day read as wall-clock time in the task's time zone, so moving the task
moves the reminder.

Daylight-saving days follow one rule, the one RFC 5545 gives for a single
event: a wall-clock time that does not exist (the hour skipped in spring) is
moved forward by the length of the gap, so 02:30 becomes 03:30; a wall-clock
time that occurs twice (the hour repeated in autumn) means its first
occurrence, the one before the clocks go back. The offset is then taken in
real elapsed minutes from that instant.

Each channel of a reminder is one delivery, a small state machine:

    scheduled ──claimed and sent──▶ sent
        │ ▲
        │ └── transient error: due again after a backoff
        ├──▶ failed      (permanent error, retries spent, too late, or the
        │                 worker died during the send: outcome unknown)
        └──▶ cancelled   (task completed or deleted, reminder disabled)

While a worker sends, the delivery stays scheduled and the worker holds a
claim on it (see `tm_domain.delivery`); a reminder that went out while it was
being cancelled still ends sent.

A change to when, where or whether a reminder goes out gives it a new
`revision` with fresh deliveries; a delivery only goes out while its revision
is the task's current one, so a superseded reminder is never sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from tm_domain.errors import InvalidInput, Problem

OFFSET_MAX_MIN = 7 * 24 * 60
PAST_GRACE = timedelta(minutes=1)
"""How far in the past a newly set reminder time may lie (clock skew between
the client and us); older than that is refused rather than sent late."""

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_EMAIL = re.compile(
    r"^[^@\s<>,;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}$"
)


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"


class Status(StrEnum):
    """The state of a reminder as a whole, derived from its deliveries."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DeliveryState(StrEnum):
    SCHEDULED = "scheduled"
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ReminderDraft:
    """A reminder as a user asks for it."""

    enabled: bool
    channels: tuple[Channel, ...]
    send_at: datetime | None = None
    offset_min: int | None = None
    phone: str | None = None
    email: str | None = None


def is_phone(value: str) -> bool:
    return bool(_E164.fullmatch(value))


def is_email(value: str) -> bool:
    return bool(_EMAIL.fullmatch(value)) and len(value) <= 254


def check(
    draft: ReminderDraft, *, time_of_day: str | None, now: datetime
) -> list[Problem]:
    """What is wrong with a reminder draft, field by field."""
    problems: list[Problem] = []

    if draft.enabled and not draft.channels:
        problems.append(Problem("reminder.channels", "must name at least one channel"))
    if len(set(draft.channels)) != len(draft.channels):
        problems.append(Problem("reminder.channels", "must not repeat a channel"))

    # NB: when both are given the offset wins, so a client can send back the
    # task it read (which shows the resolved sendAt) without editing it.
    if draft.enabled and draft.send_at is None and draft.offset_min is None:
        problems.append(Problem("reminder.sendAt", "sendAt or offsetMin is required"))
    if draft.send_at is not None and draft.send_at.utcoffset() is None:
        problems.append(
            Problem("reminder.sendAt", "must be ISO 8601 with a UTC offset or Z")
        )
    if draft.offset_min is not None:
        if not 0 <= draft.offset_min <= OFFSET_MAX_MIN:
            problems.append(
                Problem("reminder.offsetMin", f"must be 0 to {OFFSET_MAX_MIN}")
            )
        if time_of_day is None:
            problems.append(
                Problem(
                    "reminder.offsetMin", "needs the task's timeOfDay to count from"
                )
            )

    if Channel.SMS in draft.channels and draft.phone is None:
        problems.append(Problem("reminder.phone", "is required for the sms channel"))
    if draft.phone is not None and not is_phone(draft.phone):
        problems.append(
            Problem("reminder.phone", "must be an E.164 number such as +14155550100")
        )
    if Channel.EMAIL in draft.channels and draft.email is None:
        problems.append(Problem("reminder.email", "is required for the email channel"))
    if draft.email is not None and not is_email(draft.email):
        problems.append(Problem("reminder.email", "must be an e-mail address"))

    return problems


def local_instant(wall_clock: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant of a naive wall-clock time in `zone`, by the DST rule above.

    With `fold=0` Python reads a repeated time as its first occurrence and a
    skipped time with the offset in force before the gap, which lands the
    instant exactly one gap later on the clock: both are the rule we want.
    """
    return wall_clock.replace(tzinfo=zone, fold=0).astimezone(UTC)


def resolve(
    draft: ReminderDraft, *, task_date: str, time_of_day: str | None, timezone: str
) -> datetime:
    """When the reminder is due, as a UTC instant."""
    if draft.offset_min is not None and time_of_day is not None:
        wall_clock = datetime.combine(
            date.fromisoformat(task_date), time.fromisoformat(time_of_day)
        )
        start = local_instant(wall_clock, ZoneInfo(timezone))
        return start - timedelta(minutes=draft.offset_min)
    if draft.send_at is None:
        raise ValueError("a reminder needs sendAt or offsetMin")

    return draft.send_at.astimezone(UTC)


def _fingerprint(doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """What decides when, where and whether a reminder goes out."""
    send_at = doc.get("sendAt")
    if isinstance(send_at, datetime) and send_at.tzinfo is None:
        send_at = send_at.replace(tzinfo=UTC)
    return (
        bool(doc.get("enabled")),
        tuple(doc.get("channels") or ()),
        send_at,
        doc.get("phone"),
        doc.get("email"),
    )


def plan(
    draft: ReminderDraft | None,
    *,
    task_date: str,
    time_of_day: str | None,
    timezone: str,
    previous: Mapping[str, Any] | None,
    active: bool,
    now: datetime,
) -> dict[str, Any] | None:
    """The reminder sub-document a task should hold after a write.

    `previous` is what the task holds now, `active` whether the task is still
    open (not completed, not deleted). Deliveries are replaced only when the
    reminder really changed, so editing a task's title neither resends a
    reminder that went out nor loses the state of one under way.
    """
    if draft is None:
        return cancel(previous) if previous is not None else None

    # A switched-off reminder may say nothing about when: it sends nothing.
    send_at: datetime | None = None
    if draft.enabled or draft.send_at is not None or draft.offset_min is not None:
        resolved = resolve(
            draft, task_date=task_date, time_of_day=time_of_day, timezone=timezone
        )
        # Stores keep milliseconds; compare and keep what they can hold.
        send_at = resolved.replace(microsecond=resolved.microsecond // 1000 * 1000)
    wanted: dict[str, Any] = {
        "enabled": draft.enabled,
        "channels": [str(c) for c in draft.channels],
        "sendAt": send_at,
        "offsetMin": draft.offset_min,
        "phone": draft.phone,
        "email": draft.email,
    }

    # Same reminder as before: keep its deliveries, cancelling the open ones
    # if the task closed, or scheduling again if a closed task reopened.
    if previous is not None and _fingerprint(previous) == _fingerprint(wanted):
        kept = dict(previous)
        kept["offsetMin"] = draft.offset_min
        if not active:
            return cancel(kept)
        states = {d["state"] for d in (previous.get("deliveries") or {}).values()}
        # NB: a reminder set while the task was closed has no deliveries yet.
        cancelled_or_none = not states or DeliveryState.CANCELLED in states
        reopened = (
            draft.enabled
            and cancelled_or_none
            and send_at is not None
            and send_at > now
        )
        if not reopened:
            return kept

    revision = int(previous.get("revision", 0)) + 1 if previous is not None else 1
    wanted["revision"] = revision
    wanted["deliveries"] = {}
    if draft.enabled and active and send_at is not None:
        if send_at < now - PAST_GRACE:
            raise InvalidInput(
                [Problem("reminder.sendAt", "is in the past; pick a time to come")]
            )
        wanted["deliveries"] = {
            str(channel): new_delivery(send_at) for channel in draft.channels
        }

    return wanted


def new_delivery(due_at: datetime) -> dict[str, Any]:
    return {
        "state": str(DeliveryState.SCHEDULED),
        "dueAt": due_at,
        "attempts": 0,
        "lastError": None,
        "providerMessageId": None,
        "sentAt": None,
        "latenessMs": None,
    }


def cancel(reminder: Mapping[str, Any]) -> dict[str, Any]:
    """The reminder with every delivery that has not gone out cancelled."""
    deliveries = {
        channel: (
            {**d, "state": str(DeliveryState.CANCELLED)}
            if d["state"] == DeliveryState.SCHEDULED
            else dict(d)
        )
        for channel, d in (reminder.get("deliveries") or {}).items()
    }

    return {**reminder, "deliveries": deliveries}


def scheduled(reminder: Mapping[str, Any] | None) -> list[tuple[str, datetime]]:
    """The (channel, due instant) of each delivery still waiting to go out."""
    if not reminder:
        return []
    return [
        (channel, _utc(d["dueAt"]))
        for channel, d in (reminder.get("deliveries") or {}).items()
        if d["state"] == DeliveryState.SCHEDULED
    ]


@dataclass(frozen=True)
class Summary:
    """The reminder as a whole, as users read it."""

    status: Status | None
    sent_at: datetime | None
    attempts: int
    last_error: str | None


def summarize(reminder: Mapping[str, Any] | None) -> Summary:
    """Derive the reminder's status from its deliveries.

    Pending while any delivery may still go out; otherwise failed if any
    failed, cancelled if any was cancelled, and sent when all went out.
    """
    deliveries = list((reminder or {}).get("deliveries", {}).values())
    if not deliveries:
        return Summary(None, None, 0, None)

    states = {DeliveryState(d["state"]) for d in deliveries}
    if DeliveryState.SCHEDULED in states:
        status = Status.PENDING
    elif DeliveryState.FAILED in states:
        status = Status.FAILED
    elif DeliveryState.CANCELLED in states:
        status = Status.CANCELLED
    else:
        status = Status.SENT

    sent = [_utc(d["sentAt"]) for d in deliveries if d.get("sentAt")]
    errors = [d["lastError"] for d in deliveries if d.get("lastError")]

    return Summary(
        status=status,
        sent_at=max(sent) if status == Status.SENT and sent else None,
        attempts=sum(int(d.get("attempts") or 0) for d in deliveries),
        last_error=errors[-1] if errors else None,
    )


def waiting_until(
    task: Mapping[str, Any], *, revision: int, channel: str
) -> datetime | None:
    """When the task has the delivery (`revision`, `channel`) scheduled.

    None when it has no such delivery waiting: the task is closed, its
    reminder off or of another revision, the delivery settled.
    """
    reminder = task.get("reminder") or {}
    delivery = (reminder.get("deliveries") or {}).get(channel) or {}
    due_at = delivery.get("dueAt")
    if (
        task.get("deletedAt") is not None
        or task.get("completed") is not False
        or reminder.get("enabled") is not True
        or reminder.get("revision") != revision
        or delivery.get("state") != DeliveryState.SCHEDULED
        or not isinstance(due_at, datetime)
    ):
        return None

    return _utc(due_at)


def message(task: Mapping[str, Any], channel: str) -> tuple[str, str]:
    """The subject and text of a reminder for a task."""
    when = task["taskDate"]
    if task.get("timeOfDay"):
        when = f"{when} at {task['timeOfDay']} ({task.get('timezone') or 'UTC'})"
    subject = f"Reminder: {task['title']}"
    if channel == Channel.SMS:
        return subject, f"Reminder: {task['title']}, {when}"
    body = f"{task['title']}\n{when}"
    if task.get("notes"):
        body += f"\n\n{task['notes']}"

    return subject, body


def _utc(value: datetime) -> datetime:
    # Drivers hand datetimes back naive in UTC unless told otherwise.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def retry(reminder: Mapping[str, Any], *, now: datetime) -> dict[str, Any]:
    """The reminder with its failed deliveries scheduled again, due `now`.

    The reminder gets a new revision, so whatever a worker still holds of the
    old one cannot go out, and the retried deliveries start with no attempts,
    so they get the whole retry budget again; the old attempts stay in the
    delivery history. Deliveries that were sent or cancelled keep their state.
    Raises InvalidInput when no delivery failed.
    """
    deliveries = dict(reminder.get("deliveries") or {})
    failed = [
        channel
        for channel, d in deliveries.items()
        if d.get("state") == DeliveryState.FAILED
    ]
    if not failed or not reminder.get("enabled"):
        raise InvalidInput([Problem("reminder", "has no failed delivery to retry")])
    # NB: a new revision would let a delivery still scheduled go out twice.
    if any(d.get("state") == DeliveryState.SCHEDULED for d in deliveries.values()):
        raise InvalidInput(
            [Problem("reminder", "is still pending; retry once it has settled")]
        )

    for channel in failed:
        deliveries[channel] = new_delivery(now)

    return {
        **reminder,
        "revision": int(reminder.get("revision") or 0) + 1,
        "deliveries": deliveries,
    }
