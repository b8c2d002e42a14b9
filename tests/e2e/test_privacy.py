"""Data-subject requests against the platform as deployed, worker and providers too."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
from pymongo import MongoClient

from tests.support.platform import SECRET, TASKS, Platform, for_task
from tm_adapters.settings import ConnectionSettings

pytestmark = pytest.mark.e2e

ADMIN = "/api/v1/admin"
PHONES = {"dana": "+14155550111", "eric": "+14155550222"}
EMAILS = {"dana": "dana@example.com", "eric": "eric@example.org"}


def admin_headers() -> dict[str, str]:
    claims = {
        "sub": "root",
        "tenant": "acme",
        "role": "admin",
        "exp": time.time() + 600,
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


def reminder_task(platform: Platform, user: str, *, due_in: float) -> dict[str, Any]:
    body = platform.task(
        due_in=timedelta(seconds=due_in), phone=PHONES[user], email=EMAILS[user]
    )
    return platform.create(body, user=user)


def wait_until_sent(platform: Platform, task: dict[str, Any], user: str) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if platform.get(task["_id"], user=user)["reminder"]["status"] == "sent":
            return
        time.sleep(0.1)
    pytest.fail(f"the reminder of {user} was never settled as sent")


@pytest.fixture(scope="module")
def populated(
    servers: ConnectionSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Platform, dict[str, list[dict[str, Any]]]]]:
    """Dana and Eric, each with a reminder sent on both channels, a reminder
    to come, and a deleted task."""
    running = Platform(servers, tmp_path_factory.mktemp("privacy"))
    try:
        running.start_service()
        running.start_worker()
        running.warm_up()
        made: dict[str, list[dict[str, Any]]] = {}
        for user in ("dana", "eric"):
            sent = reminder_task(running, user, due_in=2)
            later = reminder_task(running, user, due_in=3600)
            gone = reminder_task(running, user, due_in=7200)
            deleted = running.http.delete(
                f"{TASKS}/{gone['_id']}", headers=running.headers(user)
            )
            assert deleted.status_code == 200
            made[user] = [sent, later, gone]
        for user in ("dana", "eric"):
            running.wait_for_messages(for_task(made[user][0]), count=2, within=30)
            wait_until_sent(running, made[user][0], user)
        yield running, made
    finally:
        running.close()


def test_export_of_one_user_holds_all_of_their_data_and_none_of_the_other(
    populated: tuple[Platform, dict[str, list[dict[str, Any]]]],
) -> None:
    platform, made = populated

    response = platform.http.get(f"{ADMIN}/users/dana/export", headers=admin_headers())

    assert response.status_code == 200, response.text
    export = response.json()["data"]
    assert {t["_id"] for t in export["tasks"]} == {t["_id"] for t in made["dana"]}
    assert [t["_id"] for t in export["tasks"] if t["deletedAt"]] == [
        made["dana"][2]["_id"]
    ]
    sent_ids = {
        m["id"] for m in platform.providers.messages() if for_task(made["dana"][0])(m)
    }
    assert {d["providerMessageId"] for d in export["reminderDeliveries"]} == sent_ids
    assert {d["channel"] for d in export["reminderDeliveries"]} == {"sms", "email"}
    text = json.dumps(export)
    for theirs in (PHONES["eric"], EMAILS["eric"], *(t["_id"] for t in made["eric"])):
        assert theirs not in text
    assert {n["what"] for n in export["notIncluded"]} >= {
        "task events on the Kafka topic"
    }


def test_every_collection_the_platform_writes_is_covered_by_the_export(
    populated: tuple[Platform, dict[str, list[dict[str, Any]]]],
) -> None:
    platform, _ = populated
    # Every kind of request the platform serves, so each collection appears.
    for path in ("/api/v1/visitor/data/export", "/api/v1/visitor/data"):
        method = "GET" if path.endswith("export") else "DELETE"
        answer = platform.http.request(method, path, headers=platform.headers("carol"))
        assert answer.status_code == 200
    with MongoClient(platform.env["TM_MONGODB_URI"]) as client:
        db = client[platform.database]
        names = set(db.list_collection_names())
        stored = {
            name: db[name].count_documents({"tenantId": "acme", "userId": "dana"})
            for name in names
        }

    export = platform.http.get(
        f"{ADMIN}/users/dana/export", headers=admin_headers()
    ).json()["data"]

    covered = export["collections"]
    for name in names:
        assert name in covered, f"{name} is written but not covered by the export"
        section = covered[name]["section"]
        if section is None:
            assert covered[name]["reason"]
        else:
            assert len(export[section]) == stored[name], name
    assert {"visitor_time_tasks", "reminder_deliveries", "privacy_audit"} <= names


def test_deleting_a_user_whose_reminder_is_due_in_seconds_sends_nothing(
    platform: Platform,
) -> None:
    doomed = reminder_task(platform, "dana", due_in=4)
    kept = reminder_task(platform, "eric", due_in=4)
    time.sleep(1)  # the worker has the reminder in memory by now

    erased = platform.http.delete(f"{ADMIN}/users/dana/data", headers=admin_headers())
    platform.wait_for_messages(for_task(kept), count=2, within=20)
    time.sleep(3)

    assert erased.status_code == 200, erased.text
    assert erased.json()["data"]["remindersCancelled"] == 2
    assert [m for m in platform.providers.messages() if for_task(doomed)(m)] == []
    dana = platform.headers("dana")
    assert (
        platform.http.get(f"{TASKS}/{doomed['_id']}", headers=dana).status_code == 404
    )
    day = doomed["taskDate"]
    assert (
        platform.http.get(f"{TASKS}/daily?date={day}", headers=dana).json()["data"]
        == []
    )
    listed = platform.http.get(f"{ADMIN}/reminders", headers=admin_headers())
    users = {r["userId"] for r in listed.json()["data"]}
    assert "dana" not in users
    assert "eric" in users
    wait_until_sent(platform, kept, "eric")
    with MongoClient(platform.env["TM_MONGODB_URI"]) as client:
        audit = list(client[platform.database]["privacy_audit"].find())
    [record] = [r for r in audit if r["action"] == "DataErased"]
    assert record["userId"] == "dana"
    assert record["counts"] == {
        "tasks": 1,
        "remindersCancelled": 2,
        "teamMemberships": 0,
    }
    for personal in (PHONES["dana"], EMAILS["dana"], doomed["title"]):
        assert personal not in repr(audit)
