"""Tasks: the order of the views, their calendar ranges and the rules of a draft."""

import random
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from tm_domain import reminders, tasks
from tm_domain.errors import InvalidInput, Problem


def a_task_draft(**changes: Any) -> tasks.TaskDraft:
    fields: dict[str, Any] = {
        "title": "Dentist",
        "task_date": date(2026, 6, 2),
        "session": tasks.Session.MORNING,
        "time_of_day": "09:30",
        "tags": ("health",),
        "timezone": "Europe/Paris",
    }
    fields.update(changes)
    return tasks.TaskDraft(**fields)


def an_sms_reminder(**changes: Any) -> reminders.ReminderDraft:
    fields: dict[str, Any] = {
        "enabled": True,
        "channels": (reminders.Channel.SMS,),
        "offset_min": 30,
        "phone": "+14155550100",
    }
    fields.update(changes)
    return reminders.ReminderDraft(**fields)


def problems_of(draft: tasks.TaskDraft, *, now: datetime) -> list[Problem]:
    with pytest.raises(InvalidInput) as refused:
        tasks.validate(draft, now=now)
    return refused.value.problems


# sort_key


def test_views_order_tasks_by_date_then_part_of_day_then_time() -> None:
    in_view_order = [
        ("2025-12-31", "evening", "23:30"),
        ("2026-01-01", "morning", None),
        ("2026-01-01", "morning", "00:00"),
        ("2026-01-01", "morning", "07:15"),
        ("2026-01-01", "morning", "11:59"),
        ("2026-01-01", "afternoon", None),
        ("2026-01-01", "afternoon", "12:00"),
        ("2026-01-01", "evening", None),
        ("2026-01-01", "evening", "18:45"),
        ("2026-01-02", "morning", "06:00"),
        ("2026-01-10", "morning", "06:00"),
    ]
    shuffled = in_view_order[:]
    random.Random(5).shuffle(shuffled)

    ordered = sorted(shuffled, key=lambda t: tasks.sort_key(*t))

    assert ordered == in_view_order


def test_part_of_day_outranks_the_clock_time() -> None:
    early_evening = tasks.sort_key("2026-06-02", "evening", "06:00")
    late_afternoon = tasks.sort_key("2026-06-02", "afternoon", "17:00")

    assert late_afternoon < early_evening


def test_a_task_without_a_time_comes_first_in_its_part_of_day() -> None:
    untimed = tasks.sort_key("2026-06-02", "afternoon", None)
    earliest = tasks.sort_key("2026-06-02", "afternoon", "00:00")
    morning = tasks.sort_key("2026-06-02", "morning", "23:59")

    assert morning < untimed < earliest


def test_sort_key_refuses_a_part_of_day_it_does_not_know() -> None:
    with pytest.raises(ValueError, match="night"):
        tasks.sort_key("2026-06-02", "night", None)


# calendar ranges


@pytest.mark.parametrize("offset", range(7), ids=lambda n: f"start+{n}d")
def test_a_week_is_seven_days_from_any_weekday(offset: int) -> None:
    start = date(2026, 6, 1) + timedelta(days=offset)

    week = tasks.week(start)

    assert week.first == start
    assert week.last == start + timedelta(days=6)


def test_a_week_may_run_into_the_next_year() -> None:
    week = tasks.week(date(2025, 12, 29))

    assert (week.first_text, week.last_text) == ("2025-12-29", "2026-01-04")


@pytest.mark.parametrize(
    ("year", "month_number", "last_text"),
    [
        (2024, 2, "2024-02-29"),
        (2026, 2, "2026-02-28"),
        (2000, 2, "2000-02-29"),
        (1900, 2, "1900-02-28"),
        (2026, 4, "2026-04-30"),
        (2026, 12, "2026-12-31"),
    ],
    ids=["leap-feb", "plain-feb", "leap-century", "plain-century", "april", "dec"],
)
def test_a_month_runs_from_its_first_to_its_last_day(
    year: int, month_number: int, last_text: str
) -> None:
    month = tasks.month(year, month_number)

    assert month.first_text == f"{year}-{month_number:02d}-01"
    assert month.last_text == last_text


def test_a_day_is_a_range_of_one_date() -> None:
    day = tasks.day(date(2026, 2, 28))

    assert (day.first_text, day.last_text) == ("2026-02-28", "2026-02-28")


# time zones


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "",
        "Not/AZone",
        "/etc/localtime",
        "America/../../etc/passwd",
        "America",
        "UTC\x00",
        "Europe/" + "x" * 60,
    ],
    ids=[
        "traversal",
        "empty",
        "unknown",
        "absolute",
        "inner-dots",
        "folder",
        "nul",
        "long",
    ],
)
def test_a_name_that_is_not_a_plain_iana_zone_is_refused(name: str) -> None:
    assert tasks.zone(name) is None


@pytest.mark.parametrize("name", ["America/New_York", "Europe/London", "UTC"])
def test_an_iana_zone_name_gives_that_zone(name: str) -> None:
    zone = tasks.zone(name)

    assert zone is not None
    assert zone.key == name


# validate


def test_a_draft_that_keeps_every_rule_is_accepted(now: datetime) -> None:
    draft = a_task_draft(reminder=an_sms_reminder())

    assert tasks.validate(draft, now=now) is None


def test_an_unknown_timezone_is_refused(now: datetime) -> None:
    draft = a_task_draft(timezone="Mars/Olympus_Mons")

    assert problems_of(draft, now=now) == [
        Problem("timezone", "must be an IANA time zone name")
    ]


@pytest.mark.parametrize("time_of_day", ["24:00", "9:00", "12:60", "12:00\n", ""])
def test_a_time_of_day_off_the_24_hour_clock_is_refused(
    time_of_day: str, now: datetime
) -> None:
    draft = a_task_draft(time_of_day=time_of_day)

    assert problems_of(draft, now=now) == [
        Problem("timeOfDay", "must be HH:MM on a 24-hour clock")
    ]


@pytest.mark.parametrize("time_of_day", ["00:00", "09:05", "19:59", "23:59"])
def test_a_time_of_day_on_the_24_hour_clock_is_accepted(time_of_day: str) -> None:
    assert tasks.is_time_of_day(time_of_day) is True


def test_a_repeated_tag_is_refused(now: datetime) -> None:
    draft = a_task_draft(tags=("home", "errands", "home"))

    assert problems_of(draft, now=now) == [Problem("tags", "must not repeat a tag")]


def test_the_reminder_is_checked_with_the_task(now: datetime) -> None:
    draft = a_task_draft(reminder=an_sms_reminder(phone=None))

    assert problems_of(draft, now=now) == [
        Problem("reminder.phone", "is required for the sms channel")
    ]


def test_the_reminder_offset_counts_from_the_task_time_of_day(now: datetime) -> None:
    draft = a_task_draft(time_of_day=None, reminder=an_sms_reminder(offset_min=15))

    assert problems_of(draft, now=now) == [
        Problem("reminder.offsetMin", "needs the task's timeOfDay to count from")
    ]


def test_every_problem_is_reported_at_once(now: datetime) -> None:
    draft = a_task_draft(
        time_of_day="25:00",
        tags=("a", "a"),
        reminder=an_sms_reminder(channels=(), offset_min=None),
        extra_problems=(Problem("title", "must not be empty"),),
    )

    problems = problems_of(draft, now=now)

    assert [p.field for p in problems] == [
        "title",
        "timeOfDay",
        "tags",
        "reminder.channels",
        "reminder.sendAt",
    ]


def test_the_refusal_says_each_field_and_what_is_wrong(now: datetime) -> None:
    draft = a_task_draft(timezone="Nowhere", tags=("x", "x"))

    with pytest.raises(InvalidInput) as refused:
        tasks.validate(draft, now=now)

    assert str(refused.value) == (
        "timezone: must be an IANA time zone name; tags: must not repeat a tag"
    )
