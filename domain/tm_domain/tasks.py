"""Tasks: their fields, limits, ordering and the calendar ranges of the views.

A task's `taskDate` is a calendar date kept as the text `YYYY-MM-DD`, never as
a midnight instant, so the day a user saves is the day every client reads back,
whatever time zone the server, the database or the client is in.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tm_domain import reminders
from tm_domain.errors import InvalidInput, Problem

TITLE_MAX = 200
NOTES_MAX = 1000
CATEGORY_MAX = 50
TAG_MAX = 30
TAGS_MAX = 20
DURATION_MAX_MIN = 24 * 60
TIMEZONE_DEFAULT = "UTC"

_TIME_OF_DAY = re.compile(r"^(?:[01]\d|2[0-3]):[0-5]\d$")


class Session(StrEnum):
    """The part of the day a task belongs to, in the order views show them."""

    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"


class Priority(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class Scope(StrEnum):
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


_SESSION_RANK = {Session.MORNING: 0, Session.AFTERNOON: 1, Session.EVENING: 2}


@dataclass(frozen=True)
class TaskDraft:
    """What a user may set on a task, already parsed by the API layer."""

    title: str
    task_date: date
    session: Session
    time_of_day: str | None = None
    notes: str | None = None
    duration_min: int | None = None
    priority: Priority = Priority.MEDIUM
    scope: Scope = Scope.DAILY
    category: str | None = None
    tags: tuple[str, ...] = ()
    timezone: str = TIMEZONE_DEFAULT
    reminder: reminders.ReminderDraft | None = None
    extra_problems: tuple[Problem, ...] = field(default=())


def is_time_of_day(value: str) -> bool:
    return bool(_TIME_OF_DAY.fullmatch(value))


def zone(name: str) -> ZoneInfo | None:
    """The IANA zone called `name`, or None when there is no such zone."""
    # ZoneInfo accepts relative paths and odd keys; only plain IANA names pass.
    if not name or name.startswith(("/", ".")) or ".." in name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def validate(draft: TaskDraft, *, now: datetime) -> None:
    """Refuse a draft that breaks a rule no single field can express alone."""
    problems = list(draft.extra_problems)

    tz = zone(draft.timezone)
    if tz is None:
        problems.append(Problem("timezone", "must be an IANA time zone name"))
    if draft.time_of_day is not None and not is_time_of_day(draft.time_of_day):
        problems.append(Problem("timeOfDay", "must be HH:MM on a 24-hour clock"))
    if len(set(draft.tags)) != len(draft.tags):
        problems.append(Problem("tags", "must not repeat a tag"))

    if draft.reminder is not None and tz is not None:
        problems.extend(
            reminders.check(draft.reminder, time_of_day=draft.time_of_day, now=now)
        )

    if problems:
        raise InvalidInput(problems)


def sort_key(task_date: str, session: str, time_of_day: str | None) -> str:
    """The text whose order is the order of the views.

    Views sort by date, then part of day, then time of day; a task with no
    time of day comes first in its part of day, like an all-day entry.
    """
    rank = _SESSION_RANK[Session(session)]
    return f"{task_date}|{rank}|{time_of_day or '--:--'}"


@dataclass(frozen=True)
class DateRange:
    """Calendar days from `first` to `last`, both included."""

    first: date
    last: date

    @property
    def first_text(self) -> str:
        return self.first.isoformat()

    @property
    def last_text(self) -> str:
        return self.last.isoformat()


def day(value: date) -> DateRange:
    return DateRange(value, value)


def week(week_start: date) -> DateRange:
    """Seven days from `week_start`, whatever weekday it is."""
    return DateRange(week_start, week_start + timedelta(days=6))


def month(year: int, month_number: int) -> DateRange:
    last_day = calendar.monthrange(year, month_number)[1]
    return DateRange(date(year, month_number, 1), date(year, month_number, last_day))
