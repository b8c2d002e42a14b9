"""Export, erasure, purge and the administrators' views, on the real servers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from tm_adapters import mongo as mongo_adapter
from tm_adapters.reminder_store import MongoReminderStore
from tm_domain.delivery import Result, Settlement
from tm_domain.events import Due
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

TASKS = "/api/v1/visitor/time/tasks"
ADMIN = "/api/v1/admin"
PHONES = {"alice": "+14155550101", "bob": "+14155550202"}
EMAILS = {"alice": "alice@example.com", "bob": "bob@example.org"}

Bearer = Callable[..., dict[str, str]]


async def create(
    client: httpx.AsyncClient, bearer: Bearer, example: Any, user: str, title: str
) -> dict[str, Any]:
    body = example(title=title)
    body["reminder"].update(phone=PHONES[user], email=EMAILS[user])
    response = await client.post(TASKS, json=body, headers=bearer(sub=user))
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()["data"]
    return task


async def attempt(
    db: Any, task: dict[str, Any], channel: str, result: Result
) -> str | None:
    """Claim and settle one delivery as the worker would, at its due time."""
    store = MongoReminderStore(db)
    due_at = datetime.fromisoformat(task["reminder"]["sendAt"])
    due = Due(task["_id"], task["reminder"]["revision"], channel, due_at)
    claim = await store.claim(
        due, now=due_at, lease_until=due_at + timedelta(minutes=1), owner="w"
    )
    assert claim is not None
    provider_id = f"SM{task['_id']}" if result is Result.SENT else None
    await store.settle(
        claim,
        Settlement(
            result,
            at=due_at,
            attempted=True,
            provider_message_id=provider_id,
            error=None if provider_id else "400 refused",
        ),
    )
    return provider_id


@pytest.fixture
def db(mongo: AsyncMongoClient[Any], settings: ServiceSettings) -> Any:
    return mongo[settings.mongodb_database]


@pytest.fixture
async def people(
    client: httpx.AsyncClient, bearer: Bearer, example: Any, db: Any
) -> dict[str, Any]:
    """Alice and Bob of one tenant, two tasks each.

    Alice's first reminder went out by SMS, its e-mail is still to come, and
    her second task is deleted; both deliveries of Bob's first reminder failed.
    """
    found: dict[str, Any] = {}
    for user in ("alice", "bob"):
        first = await create(client, bearer, example, user, f"{user} first secret")
        second = await create(client, bearer, example, user, f"{user} second secret")
        result = Result.SENT if user == "alice" else Result.FAILED
        provider_id = await attempt(db, first, "sms", result)
        if user == "bob":
            await attempt(db, first, "email", result)
        found[user] = {"tasks": [first, second], "providerId": provider_id}
    gone = found["alice"]["tasks"][1]["_id"]
    response = await client.delete(f"{TASKS}/{gone}", headers=bearer(sub="alice"))
    assert response.status_code == 200

    return found


def admin(bearer: Bearer) -> dict[str, str]:
    return bearer(sub="root", role="admin")


async def test_export_holds_all_of_one_users_data_and_none_of_anothers(
    client: httpx.AsyncClient, bearer: Bearer, people: dict[str, Any], db: Any
) -> None:
    response = await client.get(
        "/api/v1/visitor/data/export", headers=bearer(sub="alice")
    )

    assert response.status_code == 200, response.text
    export = response.json()["data"]
    assert export["format"] == "time-manager.personal-data"
    assert export["formatVersion"] == 1
    assert export["subject"] == {"tenantId": "tenant-1", "userId": "alice"}
    ids = {t["_id"] for t in people["alice"]["tasks"]}
    assert {t["_id"] for t in export["tasks"]} == ids
    deleted = [t for t in export["tasks"] if t["deletedAt"]]
    assert [t["_id"] for t in deleted] == [people["alice"]["tasks"][1]["_id"]]
    assert all(t["reminder"]["phone"] == PHONES["alice"] for t in export["tasks"])
    [sent] = export["reminderDeliveries"]
    assert sent["providerMessageId"] == people["alice"]["providerId"]
    assert sent["result"] == "sent"
    assert export["notIncluded"]
    text = json.dumps(export)
    for leak in ("bob", PHONES["bob"], EMAILS["bob"]):
        assert leak not in text
    for name in await db.list_collection_names():
        assert name in export["collections"], name


async def test_admin_routes_refuse_visitors_missing_and_unknown_credentials(
    client: httpx.AsyncClient, bearer: Bearer
) -> None:
    url = f"{ADMIN}/users/alice/export"

    visitor = await client.get(url, headers=bearer(sub="alice"))
    nobody = await client.get(url)
    key = await client.get(url, headers={"X-API-Key": "tk_anything"})

    assert visitor.status_code == 403
    assert visitor.json()["error"]["code"] == "FORBIDDEN"
    assert nobody.status_code == 401
    assert key.status_code == 401


async def test_a_plugged_in_tenant_key_acts_on_its_tenant_only(
    app: FastAPI, client: httpx.AsyncClient, people: dict[str, Any], db: Any
) -> None:
    class Keys:
        async def tenant_of(self, key: str) -> str | None:
            return {"tk_one": "tenant-1", "tk_two": "tenant-2"}.get(key)

    app.state.tenant_keys = Keys()

    own = await client.get(
        f"{ADMIN}/users/alice/export", headers={"X-API-Key": "tk_one"}
    )
    other = await client.get(
        f"{ADMIN}/users/alice/export", headers={"X-API-Key": "tk_two"}
    )

    assert own.status_code == 200
    [record] = await db["privacy_audit"].find({"action": "DataExported"}).to_list()
    assert record["actor"] == {"id": "api-key", "role": "admin", "via": "apiKey"}
    assert other.status_code == 404


async def test_admin_export_of_an_unknown_user_is_not_found(
    client: httpx.AsyncClient, bearer: Bearer
) -> None:
    response = await client.get(f"{ADMIN}/users/nobody/export", headers=admin(bearer))

    assert response.status_code == 404
    assert response.json()["error"]["message"] == "no data stored for this user"


async def test_erasure_hides_the_user_and_stops_reminders_a_worker_holds(
    client: httpx.AsyncClient, bearer: Bearer, people: dict[str, Any], db: Any
) -> None:
    kept = people["alice"]["tasks"][0]
    held = Due(
        kept["_id"],
        kept["reminder"]["revision"],
        "email",
        datetime.fromisoformat(kept["reminder"]["sendAt"]),
    )

    response = await client.delete(f"{ADMIN}/users/alice/data", headers=admin(bearer))

    assert response.status_code == 200, response.text
    summary = response.json()["data"]
    assert summary["tasks"] == 1
    assert summary["remindersCancelled"] == 1
    alice = bearer(sub="alice")
    assert (
        await client.get(f"{TASKS}/{kept['_id']}", headers=alice)
    ).status_code == 404
    day = await client.get(f"{TASKS}/daily?date=2030-01-15", headers=alice)
    assert day.json()["data"] == []
    listed = await client.get(f"{ADMIN}/reminders", headers=admin(bearer))
    assert {r["userId"] for r in listed.json()["data"]} == {"bob"}
    bobs = await client.get(f"{TASKS}/daily?date=2030-01-15", headers=bearer(sub="bob"))
    assert len(bobs.json()["data"]) == 2
    claim = await MongoReminderStore(db).claim(
        held, now=held.due_at, lease_until=held.due_at, owner="w"
    )
    assert claim is None
    [record] = await db["privacy_audit"].find({"action": "DataErased"}).to_list()
    assert record["userId"] == "alice"
    assert record["completedAt"] is not None
    text = repr(record)
    for personal in (PHONES["alice"], EMAILS["alice"], "secret"):
        assert personal not in text


async def test_a_dry_run_erasure_reports_and_changes_nothing(
    client: httpx.AsyncClient, bearer: Bearer, people: dict[str, Any], db: Any
) -> None:
    response = await client.delete(
        f"{ADMIN}/users/alice/data?dryRun=true", headers=admin(bearer)
    )

    assert response.json()["data"]["tasks"] == 1
    assert response.json()["data"]["dryRun"] is True
    kept = people["alice"]["tasks"][0]["_id"]
    found = await client.get(f"{TASKS}/{kept}", headers=bearer(sub="alice"))
    assert found.status_code == 200
    assert await db["privacy_audit"].count_documents({"action": "DataErased"}) == 0


async def test_purge_removes_nothing_before_the_window_and_everything_after(
    app: FastAPI,
    client: httpx.AsyncClient,
    bearer: Bearer,
    people: dict[str, Any],
    db: Any,
) -> None:
    erased = await client.delete(f"{ADMIN}/users/alice/data", headers=admin(bearer))
    assert erased.status_code == 200
    start = datetime.now(UTC)
    privacy = app.state.privacy
    url = f"{ADMIN}/data/purge"

    privacy.clock = lambda: start + timedelta(days=29)
    early = await client.post(url, headers=admin(bearer))
    left_early = await db["visitor_time_tasks"].count_documents({"userId": "alice"})
    privacy.clock = lambda: start + timedelta(days=31)
    dry = await client.post(f"{url}?dryRun=true", headers=admin(bearer))
    late = await client.post(url, headers=admin(bearer))

    assert early.json()["data"]["tasks"] == 0
    assert left_early == 2
    assert dry.json()["data"]["tasks"] == 2
    assert late.json()["data"]["tasks"] == 2
    assert late.json()["data"]["erasuresCompleted"] == 1
    assert await db["visitor_time_tasks"].count_documents({"userId": "alice"}) == 0
    assert await db["reminder_deliveries"].count_documents({"userId": "alice"}) == 0
    assert await db["visitor_time_tasks"].count_documents({"userId": "bob"}) == 2
    assert await db["reminder_deliveries"].count_documents({"userId": "bob"}) == 2
    audit = await db["privacy_audit"].find({"tenantId": "tenant-1"}).to_list()
    actions = sorted(r["action"] for r in audit)
    assert actions == ["DataErased", "DataPurged"]
    assert next(r for r in audit if r["action"] == "DataErased")["purgedAt"]
    for personal in (PHONES["alice"], EMAILS["alice"], "secret"):
        assert personal not in repr(audit)


async def test_failed_reminders_are_listed_and_retried_once(
    client: httpx.AsyncClient, bearer: Bearer, people: dict[str, Any]
) -> None:
    failed_task = people["bob"]["tasks"][0]

    listed = await client.get(f"{ADMIN}/reminders?status=failed", headers=admin(bearer))
    retried = await client.post(
        f"{ADMIN}/reminders/{failed_task['_id']}/retry", headers=admin(bearer)
    )
    again = await client.post(
        f"{ADMIN}/reminders/{failed_task['_id']}/retry", headers=admin(bearer)
    )
    unknown = await client.post(
        f"{ADMIN}/reminders/{'0' * 24}/retry", headers=admin(bearer)
    )

    assert [r["taskId"] for r in listed.json()["data"]] == [failed_task["_id"]]
    assert retried.status_code == 200, retried.text
    reminder = retried.json()["data"]["reminder"]
    assert reminder["status"] == "pending"
    assert reminder["revision"] == failed_task["reminder"]["revision"] + 1
    assert reminder["deliveries"]["sms"]["attempts"] == 0
    assert reminder["deliveries"]["email"]["state"] == "scheduled"
    assert again.status_code == 400
    assert unknown.status_code == 404


async def test_tenants_and_status_show_only_the_callers_tenant(
    client: httpx.AsyncClient, bearer: Bearer, people: dict[str, Any]
) -> None:
    tenants = await client.get(f"{ADMIN}/tenants", headers=admin(bearer))
    own = await client.get(f"{ADMIN}/tenants/tenant-1", headers=admin(bearer))
    other = await client.get(f"{ADMIN}/tenants/tenant-2", headers=admin(bearer))
    status = await client.get(f"{ADMIN}/status", headers=admin(bearer))

    [tenant] = tenants.json()["data"]
    assert tenant["tenantId"] == "tenant-1"
    assert (tenant["users"], tenant["tasks"], tenant["deletedTasks"]) == (2, 3, 1)
    assert own.json()["data"] == tenant
    assert other.status_code == 404
    body = status.json()["data"]
    assert body["mongodb"]["state"] == "up"
    assert body["ready"] is True
    assert body["worker"]["overdueDeliveries"] == 0


def test_the_lock_collection_name_is_the_one_the_export_explains() -> None:
    from tm_adapters.privacy_store import COLLECTIONS

    assert mongo_adapter.LOCKS_COLLECTION in COLLECTIONS


async def test_the_periodic_purge_removes_expired_data_of_every_tenant(
    app: FastAPI,
    client: httpx.AsyncClient,
    bearer: Bearer,
    people: dict[str, Any],
    db: Any,
    eventually: Callable[..., Any],
) -> None:
    from tm_service.privacy import PurgeJob

    await client.delete(f"{ADMIN}/users/alice/data", headers=admin(bearer))
    start = datetime.now(UTC)
    app.state.privacy.clock = lambda: start + timedelta(days=31)
    job = PurgeJob(app.state.privacy, interval_s=0.05)

    job.start()
    try:

        async def alice_gone() -> bool:
            query = {"userId": "alice"}
            return await db["visitor_time_tasks"].count_documents(query) == 0

        gone = await eventually(alice_gone)
    finally:
        await job.stop()

    assert gone
    assert await db["visitor_time_tasks"].count_documents({"userId": "bob"}) == 2
    [record] = await db["privacy_audit"].find({"action": "DataPurged"}).to_list()
    assert record["actor"]["via"] == "schedule"


async def test_a_registered_tenant_keeps_deleted_data_for_its_own_retention(
    app: FastAPI,
    client: httpx.AsyncClient,
    bearer: Bearer,
    people: dict[str, Any],
    db: Any,
) -> None:
    # As the operator registers a TimeServiceTenant with a 5-day retention.
    await db["tenants"].insert_one(
        {
            "_id": "tenant-1",
            "displayName": "One",
            "active": True,
            "dataRetentionDays": 5,
        }
    )
    erased = await client.delete(f"{ADMIN}/users/alice/data", headers=admin(bearer))
    start = datetime.now(UTC)
    privacy = app.state.privacy

    privacy.clock = lambda: start + timedelta(days=4)
    early = await privacy.purge(tenant_id=None, actor=privacy_actor())
    privacy.clock = lambda: start + timedelta(days=6)
    late = await privacy.purge(tenant_id=None, actor=privacy_actor())
    shown = await client.get(f"{ADMIN}/tenants/tenant-1", headers=admin(bearer))

    assert erased.json()["data"]["purgeAfter"].startswith(
        (start + timedelta(days=5)).date().isoformat()
    )
    assert (early.tasks, late.tasks) == (0, 2)
    assert await db["visitor_time_tasks"].count_documents({"userId": "alice"}) == 0
    assert await db["visitor_time_tasks"].count_documents({"userId": "bob"}) == 2
    tenant = shown.json()["data"]
    assert tenant["retentionDays"] == 5
    assert tenant["registration"]["displayName"] == "One"


def privacy_actor() -> Any:
    from tm_domain.privacy import Actor

    return Actor(id="purge-job", role="admin", via="schedule")
