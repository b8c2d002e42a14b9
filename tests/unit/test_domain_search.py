"""Search rules and analytics figures, on plain task documents."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from tm_domain import analytics, search
from tm_domain.errors import InvalidInput
from tm_domain.search import Position, SearchQuery
from tm_domain.tasks import Priority, Session


def a_task(**fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "_id": "65f000000000000000000001",
        "title": "Dentist",
        "notes": None,
        "taskDate": "2030-03-01",
        "session": "morning",
        "priority": "medium",
        "category": None,
        "tags": [],
        "completed": False,
        "sortKey": "2030-03-01|0|09:00",
        **fields,
    }
    return task


@pytest.mark.parametrize(
    ("query", "selected"),
    [
        (SearchQuery(), True),
        (SearchQuery(text="DENT"), True),
        (SearchQuery(text="x-ray"), True),
        (SearchQuery(text="dentistry"), False),
        (SearchQuery(tags=("a",)), True),
        (SearchQuery(tags=("a", "b")), True),
        (SearchQuery(tags=("a", "c")), False),
        (SearchQuery(category="health"), True),
        (SearchQuery(category="work"), False),
        (SearchQuery(priority=Priority.HIGH), False),
        (SearchQuery(session=Session.MORNING), True),
        (SearchQuery(completed=True), False),
        (SearchQuery(completed=False), True),
        (SearchQuery(first="2030-03-01", last="2030-03-01"), True),
        (SearchQuery(first="2030-03-02"), False),
        (SearchQuery(last="2030-02-28"), False),
    ],
)
def test_a_query_selects_by_every_field_it_names(
    query: SearchQuery, selected: bool
) -> None:
    task = a_task(notes="Bring the X-ray", tags=["a", "b"], category="health")

    assert search.matches(task, query) is selected


def test_the_order_is_total_and_a_position_splits_it() -> None:
    tasks = [
        a_task(_id="b", sortKey="2030-03-01|0|09:00"),
        a_task(_id="a", sortKey="2030-03-01|0|09:00"),
        a_task(_id="c", sortKey="2030-03-01|0|08:00"),
    ]
    ordered = sorted(tasks, key=search.order_key)
    position = Position(*search.order_key(ordered[1]))

    assert [t["_id"] for t in ordered] == ["c", "a", "b"]
    assert [t["_id"] for t in ordered if search.comes_after(t, position)] == ["b"]


def test_a_cursor_names_its_position_and_nothing_else_passes() -> None:
    position = Position("2030-03-01|0|09:00", "65f000000000000000000001")

    assert search.decode_cursor(search.encode_cursor(position)) == position
    for forged in ("", "!!!", "e30", "WyJhIl0", "WzEsMl0", "eyJhIjoxfQ"):
        with pytest.raises(InvalidInput) as refused:
            search.decode_cursor(forged)
        assert refused.value.problems[0].field == "cursor"


def test_check_names_each_bad_part_of_a_query() -> None:
    problems = search.check(
        SearchQuery(text="", tags=("",) * 11, first="2030-03-02", last="2030-03-01")
    )

    assert sorted({p.field for p in problems}) == ["from", "q", "tags"]


def test_analytics_counts_what_the_tasks_hold() -> None:
    late = {"state": "sent", "latenessMs": 40}
    later = {"state": "sent", "latenessMs": 900}
    tasks = [
        a_task(
            completed=True,
            # 23:30 in New York on the planned day is the next day in UTC.
            completedAt=datetime(2030, 3, 2, 4, 30, tzinfo=UTC),
            timezone="America/New_York",
            reminder={"deliveries": {"sms": late, "email": {"state": "failed"}}},
        ),
        a_task(
            taskDate="2030-03-02",
            priority="high",
            session="evening",
            category="work",
            completed=True,
            completedAt=datetime(2030, 3, 5, tzinfo=UTC),
            reminder={"deliveries": {"sms": later}},
        ),
        a_task(taskDate="2030-03-09"),
    ]

    figures = analytics.summarize(tasks, first=date(2030, 3, 1), last=date(2030, 3, 3))

    assert (figures["total"], figures["completed"]) == (2, 2)
    assert figures["completionRate"] == 1.0
    assert figures["completedOnPlannedDay"] == 1
    assert figures["completedOnPlannedDayRate"] == 0.5
    assert [d["total"] for d in figures["byDay"]] == [1, 1, 0]
    assert figures["byPriority"] == {"low": 0, "medium": 1, "high": 1}
    assert figures["bySession"] == {"morning": 1, "afternoon": 0, "evening": 1}
    assert figures["byCategory"] == {"(none)": 1, "work": 1}
    assert figures["reminders"] == {
        "scheduled": 0,
        "sent": 2,
        "failed": 1,
        "cancelled": 0,
    }
    assert figures["deliveryLateness"] == {
        "count": 2,
        "p50Ms": 900,
        "p95Ms": 900,
        "maxMs": 900,
    }


def test_analytics_of_an_empty_range_has_no_rates() -> None:
    figures = analytics.summarize([], first=date(2030, 3, 1), last=date(2030, 3, 1))

    assert figures["completionRate"] is None
    assert figures["completedOnPlannedDayRate"] is None
    assert figures["deliveryLateness"]["p50Ms"] is None
