"""Team owners over the real store: members, assigned tasks, the owner's views."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.integration

OWNER = "/api/v1/owner/time"
VISITOR = "/api/v1/visitor/time/tasks"
DAY = "2030-05-06"


def _body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Prepare the demo",
        "taskDate": DAY,
        "session": "afternoon",
        "timeOfDay": "14:00",
        **fields,
    }
    return body


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def test_only_owners_use_the_owner_routes(
    client: httpx.AsyncClient, bearer: Any
) -> None:
    for role in ("visitor", "admin"):
        response = await client.get(f"{OWNER}/team", headers=bearer(role=role))
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "FORBIDDEN"
    assert (await client.get(f"{OWNER}/team")).status_code == 401


async def test_an_owner_manages_the_members_of_the_team(
    client: httpx.AsyncClient, bearer: Any
) -> None:
    owner = bearer(sub="olga", role="owner")

    first = await client.put(f"{OWNER}/team/members/mia", headers=owner)
    again = await client.put(f"{OWNER}/team/members/mia", headers=owner)
    await client.put(f"{OWNER}/team/members/ben", headers=owner)
    team = await _ok(await client.get(f"{OWNER}/team", headers=owner))
    removed = await client.delete(f"{OWNER}/team/members/ben", headers=owner)
    gone = await client.delete(f"{OWNER}/team/members/ben", headers=owner)
    bad = await client.put(f"{OWNER}/team/members/has%20space", headers=owner)
    own = await client.put(f"{OWNER}/team/members/olga", headers=owner)
    other_tenant = bearer(sub="olga", role="owner", tenant="tenant-2")
    elsewhere = await _ok(await client.get(f"{OWNER}/team", headers=other_tenant))

    assert (first.status_code, again.status_code) == (201, 200)
    assert team == {"ownerId": "olga", "members": ["ben", "mia"]}
    assert (removed.status_code, gone.status_code) == (200, 404)
    assert (bad.status_code, own.status_code) == (400, 400)
    assert elsewhere["members"] == []


async def test_an_assigned_task_is_the_members_to_complete_and_the_owners_to_change(
    client: httpx.AsyncClient, bearer: Any
) -> None:
    owner = bearer(sub="olga", role="owner")
    mia, ben = bearer(sub="mia"), bearer(sub="ben")
    for member in ("mia", "ben"):
        await client.put(f"{OWNER}/team/members/{member}", headers=owner)
    outsider = await client.post(
        f"{OWNER}/tasks", json=_body(assigneeId="zoe"), headers=owner
    )
    task = await _ok(
        await client.post(
            f"{OWNER}/tasks", json=_body(assigneeId="mia"), headers=owner
        ),
        201,
    )
    await _ok(
        await client.post(VISITOR, json=_body(title="Mia's own"), headers=mia), 201
    )

    # The member sees it in her own view, and may complete it but not change it.
    mine = await _ok(await client.get(f"{VISITOR}/daily?date={DAY}", headers=mia))
    edit = await client.put(
        f"{VISITOR}/{task['_id']}",
        json=_body(title="Renamed", version=task["version"]),
        headers=mia,
    )
    delete = await client.delete(f"{VISITOR}/{task['_id']}", headers=mia)
    # A fellow member cannot read it, nor complete it.
    peek = await client.get(f"{VISITOR}/{task['_id']}", headers=ben)
    meddle = await client.patch(f"{VISITOR}/{task['_id']}/complete", headers=ben)
    done = await _ok(
        await client.patch(f"{VISITOR}/{task['_id']}/complete", headers=mia)
    )

    # The owner sees what was assigned, with completion, and never Mia's own.
    view = await _ok(await client.get(f"{OWNER}/tasks/daily?date={DAY}", headers=owner))
    mias = await _ok(
        await client.get(f"{OWNER}/tasks/daily?date={DAY}&member=mia", headers=owner)
    )
    not_member = await client.get(
        f"{OWNER}/tasks/daily?date={DAY}&member=zoe", headers=owner
    )

    assert outsider.status_code == 400
    assert outsider.json()["error"]["details"][0]["field"] == "assigneeId"
    assert (task["assignedBy"], task["assignedTo"]) == ("olga", "mia")
    assert sorted(t["title"] for t in mine) == ["Mia's own", "Prepare the demo"]
    assert (edit.status_code, delete.status_code) == (403, 403)
    assert (peek.status_code, meddle.status_code) == (404, 404)
    assert edit.json()["error"]["code"] == "FORBIDDEN"
    assert done["completed"] is True
    assert [t["_id"] for t in view["tasks"]] == [task["_id"]]
    assert view["progress"] == {"mia": {"total": 1, "completed": 1}}
    assert mias == view
    assert not_member.status_code == 400

    # Reassigned, it moves from Mia's views to Ben's.
    moved = await _ok(
        await client.put(
            f"{OWNER}/tasks/{task['_id']}",
            json=_body(title="Demo, by Ben", version=done["version"], assigneeId="ben"),
            headers=owner,
        )
    )
    mine_after = await _ok(await client.get(f"{VISITOR}/daily?date={DAY}", headers=mia))
    bens = await _ok(await client.get(f"{VISITOR}/daily?date={DAY}", headers=ben))

    assert (moved["assignedTo"], moved["title"]) == ("ben", "Demo, by Ben")
    assert [t["title"] for t in mine_after] == ["Mia's own"]
    assert [t["_id"] for t in bens] == [task["_id"]]

    # Another owner finds nothing; the owner deletes it for good.
    stranger = bearer(sub="oscar", role="owner")
    foreign = await client.get(f"{OWNER}/tasks/{task['_id']}", headers=stranger)
    deleted = await client.delete(f"{OWNER}/tasks/{task['_id']}", headers=owner)
    after = await _ok(await client.get(f"{VISITOR}/daily?date={DAY}", headers=ben))
    read = await client.get(f"{OWNER}/tasks/{task['_id']}", headers=owner)

    assert foreign.status_code == 404
    assert deleted.status_code == 200
    assert after == []
    assert read.status_code == 404


async def test_the_owners_weekly_and_monthly_views_cover_their_days(
    client: httpx.AsyncClient, bearer: Any
) -> None:
    owner = bearer(sub="olga", role="owner")
    await client.put(f"{OWNER}/team/members/mia", headers=owner)
    for day in ("2030-05-06", "2030-05-12", "2030-05-13", "2030-06-01"):
        await _ok(
            await client.post(
                f"{OWNER}/tasks",
                json=_body(taskDate=day, assigneeId="mia"),
                headers=owner,
            ),
            201,
        )

    week = await _ok(
        await client.get(f"{OWNER}/tasks/weekly?weekStart=2030-05-06", headers=owner)
    )
    month = await _ok(
        await client.get(f"{OWNER}/tasks/monthly?month=5&year=2030", headers=owner)
    )
    bad = await client.get(f"{OWNER}/tasks/monthly?month=13&year=2030", headers=owner)

    assert [t["taskDate"] for t in week["tasks"]] == ["2030-05-06", "2030-05-12"]
    assert [t["taskDate"] for t in month["tasks"]] == [
        "2030-05-06",
        "2030-05-12",
        "2030-05-13",
    ]
    assert month["progress"] == {"mia": {"total": 3, "completed": 0}}
    assert bad.status_code == 400


async def test_memberships_are_exported_and_erased_with_the_person(
    client: httpx.AsyncClient, bearer: Any
) -> None:
    owner = bearer(sub="olga", role="owner")
    mia = bearer(sub="mia")
    for member in ("mia", "ben"):
        await client.put(f"{OWNER}/team/members/{member}", headers=owner)
    task = await _ok(
        await client.post(
            f"{OWNER}/tasks", json=_body(assigneeId="mia"), headers=owner
        ),
        201,
    )

    export = await _ok(await client.get("/api/v1/visitor/data/export", headers=mia))
    owners = await _ok(await client.get("/api/v1/visitor/data/export", headers=owner))
    erased = await _ok(await client.delete("/api/v1/visitor/data", headers=mia))
    team = await _ok(await client.get(f"{OWNER}/team", headers=owner))
    view = await _ok(await client.get(f"{OWNER}/tasks/daily?date={DAY}", headers=owner))

    assert export["teamMemberships"] == [
        {"tenantId": "tenant-1", "ownerId": "olga", "memberId": "mia"}
    ]
    assert [t["_id"] for t in export["tasks"]] == [task["_id"]]
    assert [m["memberId"] for m in owners["teamMemberships"]] == ["ben", "mia"]
    assert erased["teamMemberships"] == 1
    assert erased["tasks"] == 1
    assert team["members"] == ["ben"]
    assert view["tasks"] == []
