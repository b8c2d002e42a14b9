"""Search and analytics over the real store: filters, pages, figures."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

TASKS = "/api/v1/visitor/time/tasks"
SEARCH = f"{TASKS}/search"
ANALYTICS = "/api/v1/visitor/time/analytics"


async def _create(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(TASKS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()["data"]
    return task


def _plain(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Task",
        "taskDate": "2030-03-01",
        "session": "morning",
        "priority": "medium",
        **fields,
    }
    return body


async def _search(
    client: httpx.AsyncClient, headers: dict[str, str], **params: str
) -> tuple[list[str], str | None]:
    response = await client.get(SEARCH, params=params, headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return [t["title"] for t in data["items"]], data["nextCursor"]


async def test_each_filter_narrows_the_search_and_only_the_callers_tasks_show(
    client: httpx.AsyncClient, bearer: Any
) -> None:
    alice, bob = bearer(sub="alice"), bearer(sub="bob")
    await _create(
        client,
        alice,
        _plain(
            title="Dentist appointment",
            notes="Bring the X-ray",
            tags=["health", "family"],
            category="personal",
            priority="high",
        ),
    )
    await _create(
        client,
        alice,
        _plain(
            title="Standup",
            notes="the DENTIST moved it",
            taskDate="2030-03-02",
            session="afternoon",
            tags=["work"],
            category="work",
        ),
    )
    gone = await _create(client, alice, _plain(title="Dentist, cancelled"))
    await client.delete(f"{TASKS}/{gone['_id']}", headers=alice)
    done = await _create(
        client, alice, _plain(title="Dentist bill", taskDate="2030-04-01")
    )
    await client.patch(f"{TASKS}/{done['_id']}/complete", headers=alice)
    await _create(client, bob, _plain(title="Dentist for Bob"))

    assert (await _search(client, alice, q="dentist"))[0] == [
        "Dentist appointment",
        "Standup",
        "Dentist bill",
    ]
    assert (await _search(client, alice, q="x-RAY"))[0] == ["Dentist appointment"]
    assert (await _search(client, alice, q="a.p"))[0] == []
    assert (await _search(client, alice, tags="family,health"))[0] == [
        "Dentist appointment"
    ]
    assert (await _search(client, alice, tags="health,work"))[0] == []
    assert (await _search(client, alice, category="work"))[0] == ["Standup"]
    assert (await _search(client, alice, priority="high"))[0] == ["Dentist appointment"]
    assert (await _search(client, alice, session="afternoon"))[0] == ["Standup"]
    assert (await _search(client, alice, completed="true"))[0] == ["Dentist bill"]
    assert (await _search(client, alice, **{"from": "2030-03-02", "to": "2030-03-31"}))[
        0
    ] == ["Standup"]
    assert (await _search(client, bob))[0] == ["Dentist for Bob"]


async def test_pages_follow_one_another_without_gaps_or_repeats(
    client: httpx.AsyncClient, bearer: Any
) -> None:
    headers = bearer(sub="pager")
    # Several tasks share one sort key: the id breaks the tie.
    for n in range(7):
        await _create(client, headers, _plain(title=f"t{n}", timeOfDay="09:00"))
    await _create(client, headers, _plain(title="early", timeOfDay="08:00"))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        titles, cursor = await _search(client, headers, **params)
        seen += titles
        pages += 1
        if cursor is None:
            break
        # A task written between pages does not disturb the order.
        if pages == 1:
            await _create(client, headers, _plain(title="late", timeOfDay="23:00"))

    assert seen[0] == "early"
    assert sorted(seen[1:8]) == [f"t{n}" for n in range(7)]
    assert seen[8:] == ["late"]
    assert pages == 3


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"priority": "urgent"}, "priority"),
        ({"session": "night"}, "session"),
        ({"completed": "yes"}, "completed"),
        ({"from": "2030-02-30"}, "from"),
        ({"from": "2030-03-02", "to": "2030-03-01"}, "from"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "WzFd"}, "cursor"),
        ({"q": "x" * 201}, "q"),
        ({"tags": "a,,b"}, "tags"),
    ],
)
async def test_bad_search_parameters_get_a_validation_error(
    client: httpx.AsyncClient, bearer: Any, params: dict[str, str], field: str
) -> None:
    response = await client.get(SEARCH, params=params, headers=bearer())

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert field in [d["field"] for d in error["details"]]


async def test_analytics_adds_up_the_days_of_the_range(
    client: httpx.AsyncClient, bearer: Any, example: Any
) -> None:
    headers = bearer(sub="counter")
    first = await _create(client, headers, _plain(taskDate="2030-03-01", category="a"))
    await _create(
        client,
        headers,
        _plain(taskDate="2030-03-01", session="evening", priority="high"),
    )
    await _create(client, headers, _plain(taskDate="2030-03-03", category="a"))
    await _create(client, headers, example(taskDate="2030-03-02"))
    await _create(client, headers, _plain(taskDate="2030-03-05"))  # out of range
    await client.patch(f"{TASKS}/{first['_id']}/complete", headers=headers)

    response = await client.get(
        ANALYTICS, params={"from": "2030-03-01", "to": "2030-03-03"}, headers=headers
    )

    assert response.status_code == 200, response.text
    figures = response.json()["data"]
    assert figures["total"] == 4
    assert figures["completed"] == 1
    assert figures["completionRate"] == 0.25
    # Completed today, long before the day it was planned for.
    assert figures["completedOnPlannedDay"] == 0
    assert [(d["date"], d["total"], d["completed"]) for d in figures["byDay"]] == [
        ("2030-03-01", 2, 1),
        ("2030-03-02", 1, 0),
        ("2030-03-03", 1, 0),
    ]
    assert figures["byPriority"] == {"low": 0, "medium": 2, "high": 2}
    assert figures["bySession"] == {"morning": 3, "afternoon": 0, "evening": 1}
    assert figures["byCategory"] == {"(none)": 1, "a": 2, "work": 1}
    assert figures["reminders"]["scheduled"] == 2
    assert figures["deliveryLateness"]["count"] == 0
    assert figures["complete"] is True


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2030-03-02", "to": "2030-03-01"},
        {"from": "2030-01-01", "to": "2031-01-02"},
        {"from": "2030-13-01", "to": "2030-12-01"},
        {"from": "2030-01-01"},
    ],
    ids=["reversed", "too long", "bad date", "missing"],
)
async def test_bad_analytics_ranges_get_a_validation_error(
    client: httpx.AsyncClient, bearer: Any, params: dict[str, str]
) -> None:
    response = await client.get(ANALYTICS, params=params, headers=bearer())

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
