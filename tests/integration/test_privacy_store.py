"""The privacy store's contract, on MongoDB wire and on SQLite: a person's data
read, counted and purged. Every test runs against both stores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.documents import EMAIL, PHONE, task_document
from tests.support.stores import Backend
from tm_domain import privacy, storage
from tm_domain.delivery import Result, Settlement
from tm_domain.events import Due

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
ADA = storage.User("tenant-a", "user-1")
ACTOR = privacy.Actor(id="admin-1", role="admin", via="token")


def _document(**fields: Any) -> dict[str, Any]:
    document = task_document(send_at=NOW + timedelta(hours=1))
    document.update(fields)
    return document


async def _attempt(backend: Backend, document: dict[str, Any], *, at: datetime) -> None:
    """One sent attempt on the document's e-mail, as the worker records it."""
    due = Due(str(document["_id"]), 1, "email", document["reminder"]["sendAt"])
    claim = await backend.reminders.claim(
        due, now=at, lease_until=at + timedelta(minutes=1), owner="w"
    )
    assert claim is not None
    await backend.reminders.settle(
        claim,
        Settlement(Result.SENT, at=at, attempted=True, provider_message_id="SG1"),
    )


def _erasure(record_id: str, **fields: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "dryRun": False,
        "retentionDays": 30,
        "purgeAfter": NOW - timedelta(days=1),
        "completedAt": NOW - timedelta(days=31),
        "purgedAt": None,
        **fields,
    }
    return privacy.audit_record(
        privacy.AuditAction.ERASED,
        record_id=record_id,
        tenant_id=ADA.tenant_id,
        user_id=ADA.user_id,
        actor=ACTOR,
        at=NOW - timedelta(days=31),
        **values,
    )


async def test_a_persons_tasks_come_without_machinery_deleted_ones_on_request(
    backend: Backend,
) -> None:
    kept = _document(createdAt=NOW - timedelta(hours=2))
    deleted = _document(createdAt=NOW - timedelta(hours=1), deletedAt=NOW)
    other = _document(userId="user-2")
    await backend.put(kept, deleted, other)

    everything = await backend.privacy.tasks_of(ADA, deleted=True)
    open_only = await backend.privacy.tasks_of(ADA, deleted=False)

    assert [t["_id"] for t in everything] == [kept["_id"], deleted["_id"]]
    assert [t["_id"] for t in open_only] == [kept["_id"]]
    machinery = {"outbox", "outboxPending", "writeSeq"}
    assert not machinery & set(everything[0])
    assert everything[0]["reminder"]["email"] == EMAIL


async def test_delivery_history_and_audit_records_belong_to_their_person(
    backend: Backend,
) -> None:
    document = _document(reminder={**_document()["reminder"]})
    document["reminder"]["deliveries"]["email"]["dueAt"] = NOW - timedelta(seconds=1)
    await backend.put(document, _document(userId="user-2"))
    await _attempt(backend, document, at=NOW)
    record = privacy.audit_record(
        privacy.AuditAction.EXPORTED,
        record_id="r1",
        tenant_id=ADA.tenant_id,
        user_id=ADA.user_id,
        actor=ACTOR,
        at=NOW,
    )

    await backend.privacy.record(record)
    await backend.privacy.amend("r1", {"counts": {"tasks": 1}})
    history = await backend.privacy.deliveries_of(ADA)
    audit = await backend.privacy.audit_of(ADA)
    nobody = await backend.privacy.audit_of(storage.User("tenant-a", "user-2"))

    assert [(h["channel"], h["result"], h["providerMessageId"]) for h in history] == [
        ("email", "sent", "SG1")
    ]
    assert isinstance(history[0]["_id"], str)
    assert PHONE not in repr(history) and EMAIL not in repr(history)
    assert audit == [{**record, "counts": {"tasks": 1}}]
    assert nobody == []


async def test_purging_removes_only_what_was_deleted_before_the_cutoff(
    backend: Backend,
) -> None:
    old = _document(deletedAt=NOW - timedelta(days=40))
    recent = _document(deletedAt=NOW - timedelta(days=2))
    open_ = _document()
    await backend.put(old, recent, open_)
    cutoff = NOW - timedelta(days=30)

    expired = await backend.privacy.expired(before=cutoff, tenant_id=None, limit=10)
    other_tenant = await backend.privacy.expired(
        before=cutoff, tenant_id="tenant-b", limit=10
    )
    too_recent = await backend.privacy.remove(recent["_id"], before=cutoff)
    removed = await backend.privacy.remove(old["_id"], before=cutoff)
    again = await backend.privacy.remove(old["_id"], before=cutoff)

    assert [(t["_id"], t["tenantId"], t["userId"]) for t in expired] == [
        (old["_id"], "tenant-a", "user-1")
    ]
    assert expired[0]["deletedAt"] == NOW - timedelta(days=40)
    assert other_tenant == []
    assert too_recent == storage.Removed(tasks=0, deliveries=0)
    assert removed.tasks == 1
    assert again == storage.Removed(tasks=0, deliveries=0)
    assert await backend.stored(old["_id"]) is None
    assert await backend.stored(recent["_id"]) is not None


async def test_erasures_past_their_window_are_due_and_their_history_goes(
    backend: Backend,
) -> None:
    document = _document()
    document["reminder"]["deliveries"]["email"]["dueAt"] = NOW - timedelta(days=32)
    await backend.put(document)
    await _attempt(backend, document, at=NOW - timedelta(days=32))
    await backend.privacy.record(_erasure("due"))
    await backend.privacy.record(_erasure("dry", dryRun=True))
    await backend.privacy.record(_erasure("later", purgeAfter=NOW + timedelta(days=1)))
    await backend.privacy.record(_erasure("done", purgedAt=NOW - timedelta(days=1)))

    due = await backend.privacy.erasures_due(before=NOW, tenant_id=None)
    elsewhere = await backend.privacy.erasures_due(before=NOW, tenant_id="tenant-b")
    counts = await backend.privacy.tenant_counts("tenant-a")
    removed = await backend.privacy.remove_deliveries(
        ADA, before=NOW - timedelta(days=31)
    )

    assert [record["_id"] for record in due] == ["due"]
    assert elsewhere == []
    assert counts[0]["erasuresAwaitingPurge"] == 2
    assert removed == 1
    assert await backend.privacy.deliveries_of(ADA) == []


async def test_tenant_views_count_and_list_without_recipients(
    backend: Backend,
) -> None:
    late = _document(userId="user-2")
    late["reminder"]["sendAt"] = NOW + timedelta(hours=3)
    early = _document()
    early["reminder"]["deliveries"]["sms"]["dueAt"] = NOW - timedelta(minutes=5)
    no_reminder = _document(reminder=None)
    deleted = _document(deletedAt=NOW)
    elsewhere = _document(tenantId="tenant-b")
    await backend.put(late, early, no_reminder, deleted, elsewhere)

    listed = await backend.privacy.tenant_tasks("tenant-a", user_id=None, limit=10)
    one_user = await backend.privacy.tenant_tasks(
        "tenant-a", user_id="user-2", limit=10
    )
    counts = await backend.privacy.tenant_counts(None)
    owner = await backend.privacy.task_owner("tenant-a", early["_id"])
    not_theirs = await backend.privacy.task_owner("tenant-b", early["_id"])
    gone = await backend.privacy.task_owner("tenant-a", deleted["_id"])
    overdue = await backend.privacy.overdue(before=NOW)

    assert [t["_id"] for t in listed] == [early["_id"], late["_id"]]
    assert set(listed[0]["reminder"]) == {
        "enabled",
        "channels",
        "sendAt",
        "revision",
        "deliveries",
    }
    assert PHONE not in repr(listed) and EMAIL not in repr(listed)
    assert [t["_id"] for t in one_user] == [late["_id"]]
    assert counts == [
        {
            "tenantId": "tenant-a",
            "users": 2,
            "tasks": 3,
            "deletedTasks": 1,
            "erasuresAwaitingPurge": 0,
        },
        {
            "tenantId": "tenant-b",
            "users": 1,
            "tasks": 1,
            "deletedTasks": 0,
            "erasuresAwaitingPurge": 0,
        },
    ]
    assert owner == ADA
    assert (not_theirs, gone) == (None, None)
    assert overdue == (1, NOW - timedelta(minutes=5))


async def test_the_export_accounts_for_every_collection_the_store_writes(
    backend: Backend,
) -> None:
    document = _document()
    document["reminder"]["deliveries"]["email"]["dueAt"] = NOW - timedelta(seconds=1)
    await backend.put(document)
    due = Due(str(document["_id"]), 1, "email", NOW)
    held = await backend.reminders.claim(
        due, now=NOW, lease_until=NOW + timedelta(minutes=1), owner="w"
    )
    await backend.privacy.record(_erasure("r"))

    written = await backend.tables()

    assert held is not None
    assert written <= set(backend.privacy.collections)
    assert {"visitor_time_tasks", "reminder_claims", "privacy_audit"} <= written
