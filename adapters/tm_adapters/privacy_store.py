"""The privacy store on MongoDB: a person's data across every collection.

`MongoPrivacyStore` implements `tm_domain.storage.PrivacyStore`. It reads the
task documents (deleted ones included), the delivery history the worker
writes, and the audit records of privacy requests, which live in
`privacy_audit`; and it purges, one task at a time under the task's lock, so
that a purge never interleaves with a writer of the same task on FerretDB.

`COLLECTIONS` names every collection the project writes to and where the
export shows it; a test compares it with what a database really holds after
the platform ran, so a new collection cannot go unexported unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from tm_adapters import mongo, reminder_store, task_store, team_store, tenant_store
from tm_adapters.task_store import unavailable_on_outage
from tm_domain import storage

AUDIT = "privacy_audit"

COLLECTIONS: dict[str, str] = {
    task_store.COLLECTION: "tasks",
    reminder_store.DELIVERIES: "reminderDeliveries",
    AUDIT: "auditTrail",
    team_store.COLLECTION: "teamMemberships",
    mongo.LOCKS_COLLECTION: (
        "not exported: a lock holds a task id and a lease of a few seconds "
        "while one write is under way, and nothing about the person"
    ),
    reminder_store.CLAIMS: (
        "not exported: a claim names a task, a revision and a channel while one "
        "send is under way, is removed when it settles, and holds nothing "
        "about the person"
    ),
    tenant_store.COLLECTION: (
        "not exported: the tenant's own record (quotas, retention, a hash of "
        "its API key), about the organisation and not about any user"
    ),
}
"""Collection name to export section, or to why the export leaves it out."""

# Fields of the machinery, not of the person: the outbox of unpublished
# events (a copy of ids and due times) and the write counter.
_INTERNAL = {"outbox": False, "outboxPending": False, "writeSeq": False}


def _owned(user: storage.User) -> dict[str, str]:
    return {"tenantId": user.tenant_id, "userId": user.user_id}


def _with_text_id(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {**doc, "_id": str(doc["_id"])}


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class MongoPrivacyStore:
    collections: Mapping[str, str] = COLLECTIONS

    def __init__(
        self, db: AsyncDatabase[dict[str, Any]], *, locks: mongo.Locks | None = None
    ) -> None:
        self.db = db
        self.tasks = db[task_store.COLLECTION]
        self.deliveries = db[reminder_store.DELIVERIES]
        self.audit = db[AUDIT]
        self.memberships = db[team_store.COLLECTION]
        self._locks = locks

    async def prepare(self) -> None:
        # NB: one index per call, and only the missing ones: FerretDB 1.24
        # drops the connection on a createIndexes naming existing indexes.
        # The delivery history's index is the reminder store's to create.
        wanted = [
            (self.audit, [("tenantId", ASCENDING), ("userId", ASCENDING)]),
            (self.audit, [("action", ASCENDING), ("purgeAfter", ASCENDING)]),
        ]
        with unavailable_on_outage():
            for collection, keys in wanted:
                found = await collection.index_information()
                existing = {tuple(index["key"]) for index in found.values()}
                if tuple(keys) not in existing:
                    await collection.create_indexes([IndexModel(keys)])
            await self._lock_kind()

    async def _lock_kind(self) -> mongo.Locks:
        if self._locks is None:
            self._locks = await mongo.locks_for(self.db)
        return self._locks

    async def tasks_of(
        self, user: storage.User, *, deleted: bool
    ) -> list[storage.Task]:
        query: dict[str, Any] = _owned(user)
        if not deleted:
            query["deletedAt"] = None
        with unavailable_on_outage():
            cursor = self.tasks.find(query, projection=_INTERNAL).sort(
                [("createdAt", ASCENDING), ("_id", ASCENDING)]
            )
            docs = await cursor.to_list()

        return [_with_text_id(doc) for doc in docs]

    async def deliveries_of(self, user: storage.User) -> list[dict[str, Any]]:
        with unavailable_on_outage():
            cursor = self.deliveries.find(_owned(user)).sort(
                [("at", ASCENDING), ("_id", ASCENDING)]
            )
            docs = await cursor.to_list()

        return [_with_text_id(doc) for doc in docs]

    async def audit_of(self, user: storage.User) -> list[dict[str, Any]]:
        with unavailable_on_outage():
            cursor = self.audit.find(_owned(user)).sort(
                [("at", ASCENDING), ("_id", ASCENDING)]
            )
            return await cursor.to_list()

    async def tenants_with_deletions(self) -> list[str]:
        with unavailable_on_outage():
            deleted = await self.tasks.distinct(
                "tenantId", {"deletedAt": {"$ne": None}}
            )
            erased = await self.audit.distinct(
                "tenantId", {"action": "DataErased", "purgedAt": None, "dryRun": False}
            )
        return sorted({str(t) for t in (*deleted, *erased)})

    def _naming(self, user: storage.User) -> dict[str, Any]:
        return {
            "tenantId": user.tenant_id,
            "$or": [{"ownerId": user.user_id}, {"memberId": user.user_id}],
        }

    async def memberships_of(self, user: storage.User) -> list[dict[str, Any]]:
        with unavailable_on_outage():
            cursor = self.memberships.find(self._naming(user), {"_id": False}).sort(
                [("ownerId", ASCENDING), ("memberId", ASCENDING)]
            )
            return await cursor.to_list()

    async def forget_memberships(self, user: storage.User) -> int:
        with unavailable_on_outage():
            done = await self.memberships.delete_many(self._naming(user))
        return done.deleted_count

    async def record(self, entry: Mapping[str, Any]) -> None:
        with unavailable_on_outage():
            await self.audit.insert_one(dict(entry))

    async def amend(self, record_id: str, fields: Mapping[str, Any]) -> None:
        with unavailable_on_outage():
            await self.audit.update_one({"_id": record_id}, {"$set": dict(fields)})

    async def expired(
        self, *, before: datetime, tenant_id: str | None, limit: int
    ) -> list[storage.Task]:
        query: dict[str, Any] = {"deletedAt": {"$ne": None, "$lte": before}}
        if tenant_id is not None:
            query["tenantId"] = tenant_id
        fields = {"tenantId": True, "userId": True, "deletedAt": True}
        with unavailable_on_outage():
            cursor = self.tasks.find(query, projection=fields).sort("_id", ASCENDING)
            docs = await cursor.limit(limit).to_list()

        return [_with_text_id(doc) for doc in docs]

    async def remove(self, task_id: str, *, before: datetime) -> storage.Removed:
        key: Any = ObjectId(task_id) if ObjectId.is_valid(task_id) else task_id
        locks = await self._lock_kind()
        with unavailable_on_outage():
            # Under the task's lock, so no writer sees half a purge; checked
            # again, as the task may have been purged by another replica.
            async with locks.hold(str(key)):
                doc = await self.tasks.find_one({"_id": key}, {"deletedAt": True})
                deleted_at = None if doc is None else doc.get("deletedAt")
                if deleted_at is None or _utc(deleted_at) > before:
                    return storage.Removed(tasks=0, deliveries=0)
                history = await self.deliveries.delete_many({"taskId": task_id})
                gone = await self.tasks.delete_one({"_id": key})

        return storage.Removed(
            tasks=gone.deleted_count, deliveries=history.deleted_count
        )

    async def erasures_due(
        self, *, before: datetime, tenant_id: str | None
    ) -> list[dict[str, Any]]:
        query: dict[str, Any] = {
            "action": "DataErased",
            "dryRun": False,
            "purgeAfter": {"$lte": before},
            "purgedAt": None,
        }
        if tenant_id is not None:
            query["tenantId"] = tenant_id
        with unavailable_on_outage():
            return await self.audit.find(query).to_list()

    async def remove_deliveries(self, user: storage.User, *, before: datetime) -> int:
        with unavailable_on_outage():
            result = await self.deliveries.delete_many(
                {**_owned(user), "at": {"$lte": before}}
            )

        return result.deleted_count

    async def tenant_tasks(
        self, tenant_id: str, *, user_id: str | None, limit: int
    ) -> list[storage.Task]:
        query: dict[str, Any] = {
            "tenantId": tenant_id,
            "deletedAt": None,
            "reminder": {"$ne": None},
        }
        if user_id is not None:
            query["userId"] = user_id
        # Data minimisation: an administrator's view needs no recipients or texts.
        fields = {
            "tenantId": True,
            "userId": True,
            "reminder.enabled": True,
            "reminder.channels": True,
            "reminder.sendAt": True,
            "reminder.revision": True,
            "reminder.deliveries": True,
        }
        with unavailable_on_outage():
            cursor = self.tasks.find(query, projection=fields).sort(
                [("reminder.sendAt", ASCENDING), ("_id", ASCENDING)]
            )
            docs = await cursor.limit(limit).to_list()

        return [_with_text_id(doc) for doc in docs]

    async def task_owner(self, tenant_id: str, task_id: str) -> storage.User | None:
        if not ObjectId.is_valid(task_id):
            return None
        with unavailable_on_outage():
            doc = await self.tasks.find_one(
                {"_id": ObjectId(task_id)},
                {"tenantId": True, "userId": True, "deletedAt": True},
            )
        if doc is None or doc.get("tenantId") != tenant_id or doc.get("deletedAt"):
            return None

        return storage.User(tenant_id=tenant_id, user_id=str(doc["userId"]))

    async def tenant_counts(self, tenant_id: str | None) -> list[dict[str, Any]]:
        # NB: FerretDB's $group computes only its first accumulator, so each
        # figure is its own small query instead of one aggregation.
        query: dict[str, Any] = {} if tenant_id is None else {"tenantId": tenant_id}
        with unavailable_on_outage():
            tenants = sorted(await self.tasks.distinct("tenantId", query))
            counts = []
            for tenant in tenants:
                open_ = {"tenantId": tenant, "deletedAt": None}
                deleted = {"tenantId": tenant, "deletedAt": {"$ne": None}}
                erasures = {
                    "tenantId": tenant,
                    "action": "DataErased",
                    "dryRun": False,
                    "purgedAt": None,
                }
                counts.append(
                    {
                        "tenantId": tenant,
                        "users": len(await self.tasks.distinct("userId", open_)),
                        "tasks": await self.tasks.count_documents(open_),
                        "deletedTasks": await self.tasks.count_documents(deleted),
                        "erasuresAwaitingPurge": await self.audit.count_documents(
                            erasures
                        ),
                    }
                )

        return counts

    async def overdue(self, *, before: datetime) -> tuple[int, datetime | None]:
        count = 0
        earliest: datetime | None = None
        with unavailable_on_outage():
            for channel in reminder_store.CHANNELS:
                path = f"reminder.deliveries.{channel}"
                query = {
                    "deletedAt": None,
                    f"{path}.state": "scheduled",
                    f"{path}.dueAt": {"$lte": before},
                }
                async for doc in self.tasks.find(query, {f"{path}.dueAt": True}):
                    count += 1
                    due = _utc(doc["reminder"]["deliveries"][channel]["dueAt"])
                    earliest = due if earliest is None else min(earliest, due)

        return count, earliest
