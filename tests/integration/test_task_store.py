"""The task store's contract, on MongoDB wire and on SQLite: scoped reads,
conditional writes, the outbox. Every test runs against both stores."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.stores import Backend
from tm_domain import search, storage
from tm_domain.search import Position, SearchQuery
from tm_domain.tasks import Priority, Session, sort_key

pytestmark = pytest.mark.integration

ALICE = storage.User(tenant_id="tenant-1", user_id="user-a")
NOW = datetime.now(UTC).replace(microsecond=123_000)


def _task(backend: Backend, **fields: Any) -> dict[str, Any]:
    return {
        "_id": backend.tasks.new_id(),
        "tenantId": ALICE.tenant_id,
        "userId": ALICE.user_id,
        "title": "t",
        "taskDate": "2030-01-15",
        "sortKey": "2030-01-15|0|--:--",
        "createdAt": NOW,
        "updatedAt": NOW,
        "version": 1,
        "writeSeq": 1,
        "deletedAt": None,
        "outbox": [{"id": "e1", "version": 1}],
        "outboxPending": True,
        **fields,
    }


async def test_a_task_reads_back_as_written_without_its_outbox(
    backend: Backend,
) -> None:
    task = _task(backend, tags=["a", "b"], reminder=None, durationMin=30)

    await backend.tasks.insert(task)
    read = await backend.tasks.get(ALICE, task["_id"])

    assert read == {k: v for k, v in task.items() if k != "outbox"}
    assert read is not None and read["createdAt"].tzinfo is not None


async def test_new_ids_are_distinct_and_tell_nothing_apart_from_the_store(
    backend: Backend,
) -> None:
    ids = {backend.tasks.new_id() for _ in range(100)}

    assert len(ids) == 100
    assert all(len(i) == 24 and int(i, 16) >= 0 for i in ids)


async def test_get_hides_other_users_deleted_tasks_and_ids_it_cannot_have_made(
    backend: Backend,
) -> None:
    mine, deleted = _task(backend), _task(backend, deletedAt=NOW)
    await backend.tasks.insert(mine)
    await backend.tasks.insert(deleted)

    other_user = await backend.tasks.get(
        storage.User("tenant-1", "user-b"), mine["_id"]
    )
    other_tenant = await backend.tasks.get(
        storage.User("tenant-2", "user-a"), mine["_id"]
    )
    gone = await backend.tasks.get(ALICE, deleted["_id"])
    malformed = await backend.tasks.get(ALICE, "not-an-object-id")
    unknown = await backend.tasks.get(ALICE, backend.tasks.new_id())

    assert (other_user, other_tenant, gone, malformed, unknown) == (None,) * 5


async def test_a_write_sets_fields_bumps_counters_and_queues_its_event(
    backend: Backend,
) -> None:
    task = _task(backend)
    await backend.tasks.insert(task)

    written = await backend.tasks.write(
        ALICE,
        task["_id"],
        write_seq=1,
        changes={"title": "u", "updatedAt": NOW + timedelta(seconds=1)},
        event={"id": "e2", "version": 2},
    )
    stored = await backend.stored(task["_id"])

    assert written is not None and "outbox" not in written
    assert (written["title"], written["version"], written["writeSeq"]) == ("u", 2, 2)
    assert written["updatedAt"] == NOW + timedelta(seconds=1)
    assert stored is not None
    assert [e["id"] for e in stored["outbox"]] == ["e1", "e2"]
    assert stored["outboxPending"] is True


async def test_a_write_at_an_old_write_seq_changes_nothing(backend: Backend) -> None:
    task = _task(backend, writeSeq=5)
    await backend.tasks.insert(task)

    missed = await backend.tasks.write(
        ALICE, task["_id"], write_seq=4, changes={"title": "x"}, event={"id": "e"}
    )
    other_user = await backend.tasks.write(
        storage.User("tenant-1", "user-b"),
        task["_id"],
        write_seq=5,
        changes={"title": "x"},
        event={"id": "e"},
    )
    kept = await backend.tasks.get(ALICE, task["_id"])

    assert missed is None
    assert other_user is None
    assert kept is not None and kept["title"] == "t" and kept["version"] == 1
    assert "outbox" not in kept


async def test_a_view_holds_the_users_undeleted_tasks_of_the_range_in_order(
    backend: Backend,
) -> None:
    evening = _task(backend, taskDate="2030-01-15", sortKey="2030-01-15|2|--:--")
    morning = _task(backend, taskDate="2030-01-15", sortKey="2030-01-15|0|08:00")
    next_day = _task(backend, taskDate="2030-01-16", sortKey="2030-01-16|0|--:--")
    outside = _task(backend, taskDate="2030-01-17", sortKey="2030-01-17|0|--:--")
    deleted = _task(backend, deletedAt=NOW)
    someone_else = _task(backend, userId="user-b")
    for task in (evening, morning, next_day, outside, deleted, someone_else):
        await backend.tasks.insert(task)

    found = await backend.tasks.between(ALICE, "2030-01-15", "2030-01-16", limit=10)
    first_two = await backend.tasks.between(ALICE, "2030-01-15", "2030-01-16", limit=2)

    assert [t["_id"] for t in found] == [
        morning["_id"],
        evening["_id"],
        next_day["_id"],
    ]
    assert all("outbox" not in t for t in found)
    assert [t["_id"] for t in first_two] == [morning["_id"], evening["_id"]]


async def test_dropping_published_events_keeps_those_written_since(
    backend: Backend,
) -> None:
    task = _task(backend)
    await backend.tasks.insert(task)
    pending = await backend.tasks.pending_events(limit=10)
    await backend.tasks.write(
        ALICE, task["_id"], write_seq=1, changes={"title": "u"}, event={"id": "e2"}
    )

    await backend.tasks.drop_events(task["_id"], [e["id"] for e in pending[0].events])

    left = await backend.tasks.pending_events(limit=10)
    await backend.tasks.drop_events(task["_id"], ["e2"])
    none_left = await backend.tasks.pending_events(limit=10)

    assert [e["id"] for e in pending[0].events] == ["e1"]
    assert [[e["id"] for e in entry.events] for entry in left] == [["e2"]]
    assert none_left == []


async def test_events_of_reads_the_named_tasks_that_have_pending_events(
    backend: Backend,
) -> None:
    pending, published, other = _task(backend), _task(backend), _task(backend)
    published.update(outbox=[], outboxPending=False)
    for task in (pending, published, other):
        await backend.tasks.insert(task)

    entries = await backend.tasks.events_of(
        [pending["_id"], published["_id"], "not-an-id", backend.tasks.new_id()]
    )

    assert [(e.task_id, [ev["id"] for ev in e.events]) for e in entries] == [
        (pending["_id"], ["e1"])
    ]


async def test_instants_keep_milliseconds_as_both_stores_do(backend: Backend) -> None:
    precise = datetime(2030, 1, 15, 8, 30, 0, 123_456, tzinfo=UTC)
    task = _task(backend, createdAt=precise)

    await backend.tasks.insert(task)
    read = await backend.tasks.get(ALICE, task["_id"])

    assert read is not None
    assert read["createdAt"] == precise.replace(microsecond=123_000)


async def test_search_selects_and_orders_as_the_search_rules_say(
    backend: Backend,
) -> None:
    store = backend.tasks
    user = storage.User("tenant-1", "contract")
    stranger = storage.User("tenant-1", "someone-else")
    rng = random.Random(7)
    tasks = []
    for _ in range(40):
        day = f"2030-03-{rng.randint(1, 4):02d}"
        session = rng.choice(["morning", "afternoon", "evening"])
        time_of_day = rng.choice([None, "09:00", "09:00", "14:30"])
        tasks.append(
            {
                "_id": store.new_id(),
                "tenantId": user.tenant_id,
                "userId": user.user_id,
                "title": rng.choice(["Dentist", "Standup", "Gym (legs)", "Call Mum"]),
                "notes": rng.choice([None, "bring the X-ray", "a.b*c"]),
                "taskDate": day,
                "session": session,
                "timeOfDay": time_of_day,
                "priority": rng.choice(["low", "medium", "high"]),
                "category": rng.choice([None, "work", "health"]),
                "tags": rng.sample(["a", "b", "c"], rng.randint(0, 3)),
                "completed": rng.random() < 0.3,
                "sortKey": sort_key(day, session, time_of_day),
                "deletedAt": None if rng.random() < 0.9 else datetime.now(UTC),
                "version": 1,
                "writeSeq": 1,
                "outbox": [],
                "outboxPending": False,
            }
        )
    for task in tasks:
        await store.insert(task)
    await store.insert({**tasks[0], "_id": store.new_id(), "userId": stranger.user_id})
    queries = [
        SearchQuery(),
        SearchQuery(text="x-ray"),
        SearchQuery(text="(LEGS)"),
        SearchQuery(text="a.b*"),
        SearchQuery(tags=("a", "b")),
        SearchQuery(category="work", completed=False),
        SearchQuery(priority=Priority.HIGH, session=Session.MORNING),
        SearchQuery(first="2030-03-02", last="2030-03-03", tags=("c",)),
    ]

    for query in queries:
        expected = sorted(
            (t for t in tasks if t["deletedAt"] is None and search.matches(t, query)),
            key=search.order_key,
        )
        pages: list[str] = []
        after = None
        while True:
            page = await store.search(user, query, after=after, limit=4)
            pages += [t["_id"] for t in page]
            if len(page) < 4:
                break
            after = Position(*search.order_key(page[-1]))

        assert pages == [t["_id"] for t in expected], query


async def test_an_owners_reads_see_only_what_they_assigned(backend: Backend) -> None:
    owner, other_owner = "olga", "oscar"
    assigned = _task(
        backend, userId="mia", assignedBy=owner, taskDate="2030-01-15", outbox=[]
    )
    elsewhere = _task(
        backend,
        userId="mia",
        assignedBy=owner,
        tenantId="tenant-2",
        taskDate="2030-01-15",
    )
    to_ben = _task(
        backend,
        userId="ben",
        assignedBy=owner,
        taskDate="2030-01-16",
        sortKey="2030-01-16|0|--:--",
    )
    by_oscar = _task(backend, userId="ben", assignedBy=other_owner)
    own = _task(backend, userId="mia", taskDate="2030-01-15")
    gone = _task(backend, userId="mia", assignedBy=owner, deletedAt=NOW)
    await backend.put(assigned, elsewhere, to_ben, by_oscar, own, gone)

    team = await backend.tasks.assigned_between(
        "tenant-1", owner, "2030-01-01", "2030-01-31", member=None, limit=10
    )
    mias = await backend.tasks.assigned_between(
        "tenant-1", owner, "2030-01-01", "2030-01-31", member="mia", limit=10
    )
    found = await backend.tasks.get_assigned("tenant-1", owner, str(assigned["_id"]))
    not_mine = await backend.tasks.get_assigned("tenant-1", owner, str(by_oscar["_id"]))
    deleted = await backend.tasks.get_assigned("tenant-1", owner, str(gone["_id"]))
    nonsense = await backend.tasks.get_assigned("tenant-1", owner, "no-such-id")

    assert [t["_id"] for t in team] == [str(assigned["_id"]), str(to_ben["_id"])]
    assert [t["_id"] for t in mias] == [str(assigned["_id"])]
    assert found is not None and found["userId"] == "mia"
    assert (not_mine, deleted, nonsense) == (None, None, None)


async def test_a_membership_is_added_once_and_removed_once(backend: Backend) -> None:
    teams = backend.teams

    first = await teams.add("tenant-1", "olga", "mia")
    again = await teams.add("tenant-1", "olga", "mia")
    await teams.add("tenant-1", "olga", "ben")
    await teams.add("tenant-2", "olga", "zoe")
    members = await teams.members("tenant-1", "olga")
    is_member = await teams.is_member("tenant-1", "olga", "mia")
    elsewhere = await teams.is_member("tenant-1", "olga", "zoe")
    removed = await teams.remove("tenant-1", "olga", "mia")
    removed_again = await teams.remove("tenant-1", "olga", "mia")

    assert (first, again) == (True, False)
    assert members == ["ben", "mia"]
    assert (is_member, elsewhere) == (True, False)
    assert (removed, removed_again) == (True, False)
    assert await teams.members("tenant-1", "olga") == ["ben"]
