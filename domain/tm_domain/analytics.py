"""Analytics: what a user's tasks of a range of days add up to.

Counted from the tasks themselves (not deleted ones), so the numbers agree
with the views: totals by day, priority, part of day and category; how many
were completed, and how many on the day they were planned for, that day read
in the task's own time zone; what became of each reminder delivery; and how
late the sent ones went out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tm_domain.reminders import DeliveryState
from tm_domain.tasks import TIMEZONE_DEFAULT, Priority, Session

RANGE_MAX_DAYS = 366
UNCATEGORIZED = "(none)"


def _rate(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def _percentile(ordered: list[int], share: float) -> int | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _local_day(instant: Any, timezone: str) -> str | None:
    if not isinstance(instant, datetime):
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo(TIMEZONE_DEFAULT)
    day: str = instant.astimezone(zone).date().isoformat()
    return day


def summarize(
    tasks: Iterable[Mapping[str, Any]], *, first: date, last: date
) -> dict[str, Any]:
    """The figures of the tasks dated `first` to `last`, both included."""
    days = {
        (first + timedelta(days=n)).isoformat(): {"total": 0, "completed": 0}
        for n in range((last - first).days + 1)
    }
    priorities = Counter({str(p): 0 for p in Priority})
    sessions = Counter({str(s): 0 for s in Session})
    categories: Counter[str] = Counter()
    outcomes = Counter({str(s): 0 for s in DeliveryState})
    lateness: list[int] = []
    total = completed = on_the_day = 0

    for task in tasks:
        task_date = str(task.get("taskDate"))
        if task_date not in days:
            continue
        total += 1
        days[task_date]["total"] += 1
        priorities[str(task.get("priority"))] += 1
        sessions[str(task.get("session"))] += 1
        categories[task.get("category") or UNCATEGORIZED] += 1
        if task.get("completed"):
            completed += 1
            days[task_date]["completed"] += 1
            zone = task.get("timezone") or TIMEZONE_DEFAULT
            if _local_day(task.get("completedAt"), zone) == task_date:
                on_the_day += 1
        reminder = task.get("reminder") or {}
        for delivery in (reminder.get("deliveries") or {}).values():
            outcomes[str(delivery.get("state"))] += 1
            if delivery.get("state") == DeliveryState.SENT:
                late = delivery.get("latenessMs")
                if isinstance(late, int):
                    lateness.append(late)

    lateness.sort()
    return {
        "from": first.isoformat(),
        "to": last.isoformat(),
        "total": total,
        "completed": completed,
        "completionRate": _rate(completed, total),
        "completedOnPlannedDay": on_the_day,
        "completedOnPlannedDayRate": _rate(on_the_day, completed),
        "byDay": [{"date": day, **counts} for day, counts in days.items()],
        "byPriority": dict(priorities),
        "bySession": dict(sessions),
        "byCategory": dict(sorted(categories.items())),
        "reminders": dict(outcomes),
        "deliveryLateness": {
            "count": len(lateness),
            "p50Ms": _percentile(lateness, 0.5),
            "p95Ms": _percentile(lateness, 0.95),
            "maxMs": lateness[-1] if lateness else None,
        },
    }
