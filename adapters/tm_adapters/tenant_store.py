"""The tenant registry on MongoDB, and the data lifecycle of a tenant.

One document per tenant in `tenants`, under the tenant id as `_id`, so the
time service finds it with the one lookup FerretDB serves by key:

    _id            the tenant id
    displayName    for people
    quotas         {apiCallsPerMinute, tasksPerHour, tasksPerDay}
    dataRetentionDays
    active         false once the tenant is deactivated
    apiKeySha256   digest of the tenant's API key; the key itself is never here
    ownerUid       uid of the TimeServiceTenant that registered it
    registeredAt, updatedAt, deactivatedAt

The operator is the only writer; the time service only reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from tm_adapters import mongo
from tm_adapters.reminder_store import DELIVERIES, TASKS
from tm_domain.tenants import Quotas, Tenant

COLLECTION = "tenants"


class Registration(StrEnum):
    REGISTERED = "registered"
    TAKEN = "taken"
    """Another resource, still active, holds this tenant id."""


@dataclass(frozen=True)
class Purged:
    """What a purge removed, by collection."""

    tasks: int
    deliveries: int


def _tenant(doc: dict[str, Any]) -> Tenant:
    quotas = doc.get("quotas") or {}
    return Tenant(
        tenant_id=str(doc["_id"]),
        display_name=str(doc.get("displayName") or ""),
        quotas=Quotas(
            api_calls_per_minute=int(quotas.get("apiCallsPerMinute", 60)),
            tasks_per_hour=int(quotas.get("tasksPerHour", 100)),
            tasks_per_day=int(quotas.get("tasksPerDay", 1000)),
        ),
        data_retention_days=int(doc.get("dataRetentionDays", 30)),
        active=bool(doc.get("active")),
        api_key_sha256=doc.get("apiKeySha256"),
        deactivated_at=doc.get("deactivatedAt"),
    )


class MongoTenantStore:
    def __init__(self, db: AsyncDatabase[mongo.Document]) -> None:
        self.db = db
        self.tenants = db[COLLECTION]

    async def get(self, tenant_id: str) -> Tenant | None:
        doc = await self.tenants.find_one({"_id": tenant_id})

        return None if doc is None else _tenant(doc)

    async def owner(self, tenant_id: str) -> str | None:
        doc = await self.tenants.find_one({"_id": tenant_id}, {"ownerUid": 1})

        return None if doc is None else doc.get("ownerUid")

    async def register(
        self, tenant: Tenant, *, owner_uid: str, now: datetime
    ) -> Registration:
        """Record the tenant as active under `owner_uid`; idempotent.

        A tenant id held by another resource that is still active is refused;
        one left inactive by a deleted resource (kept data) is taken over.
        """
        found = await self.tenants.find_one({"_id": tenant.tenant_id})
        if (
            found is not None
            and found.get("active")
            and found.get("ownerUid") not in (None, owner_uid)
        ):
            return Registration.TAKEN

        quotas = tenant.quotas
        await self.tenants.update_one(
            {"_id": tenant.tenant_id},
            {
                "$set": {
                    "displayName": tenant.display_name,
                    "quotas": {
                        "apiCallsPerMinute": quotas.api_calls_per_minute,
                        "tasksPerHour": quotas.tasks_per_hour,
                        "tasksPerDay": quotas.tasks_per_day,
                    },
                    "dataRetentionDays": tenant.data_retention_days,
                    "active": True,
                    "apiKeySha256": tenant.api_key_sha256,
                    "ownerUid": owner_uid,
                    "updatedAt": now,
                    "deactivatedAt": None,
                },
                "$setOnInsert": {"registeredAt": now},
            },
            upsert=True,
        )

        return Registration.REGISTERED

    async def deactivate(
        self, tenant_id: str, *, owner_uid: str, now: datetime
    ) -> bool:
        """Mark the tenant inactive, keeping its data; False if not ours."""
        result = await self.tenants.update_one(
            {"_id": tenant_id, "ownerUid": owner_uid},
            {"$set": {"active": False, "deactivatedAt": now, "updatedAt": now}},
        )

        return result.matched_count == 1

    async def purge(self, tenant_id: str, *, owner_uid: str) -> Purged | None:
        """Remove every document of the tenant; None if another resource owns it.

        The tenant is deactivated first, so the service refuses its tokens
        from then on; then its tasks go, and with them every pending
        reminder, since the worker can claim only a delivery whose task
        document is there; then the delivery history and the record itself.
        """
        owner = await self.owner(tenant_id)
        if owner not in (None, owner_uid):
            return None
        await self.tenants.update_one({"_id": tenant_id}, {"$set": {"active": False}})

        task_ids = [
            doc["_id"]
            async for doc in self.db[TASKS].find({"tenantId": tenant_id}, {"_id": 1})
        ]
        tasks = await self.db[TASKS].delete_many({"tenantId": tenant_id})
        # The lease documents of the deleted tasks, so no lock outlives its task.
        if task_ids:
            await self.db[mongo.LOCKS_COLLECTION].delete_many(
                {"_id": {"$in": [str(task_id) for task_id in task_ids]}}
            )
        deliveries = await self.db[DELIVERIES].delete_many({"tenantId": tenant_id})
        await self.tenants.delete_one({"_id": tenant_id})

        return Purged(tasks=tasks.deleted_count, deliveries=deliveries.deleted_count)

    async def purge_expired(
        self, tenant_id: str, *, retention_days: int, now: datetime
    ) -> Purged:
        """Remove deleted tasks and delivery records older than the retention.

        A deleted task whose last event is not yet on Kafka stays until the
        relay has published it.
        """
        cutoff = now - timedelta(days=retention_days)
        tasks = await self.db[TASKS].delete_many(
            {
                "tenantId": tenant_id,
                "deletedAt": {"$lt": cutoff},
                "outboxPending": False,
            }
        )
        deliveries = await self.db[DELIVERIES].delete_many(
            {"tenantId": tenant_id, "at": {"$lt": cutoff}}
        )

        return Purged(tasks=tasks.deleted_count, deliveries=deliveries.deleted_count)
