"""TimeServiceTenant: registration in MongoDB, the API key, and deletion.

The API key's only copy is the Secret `tm-tenant-<tenantId>` in the
operator's namespace; MongoDB holds its digest. The Secret is the source of
truth: a restart, or a record lost from MongoDB, finds the key there and
registers its digest again, so reconciling twice never issues a second key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo.errors import PyMongoError

from tm_adapters.tenant_store import MongoTenantStore, Purged, Registration
from tm_domain import tenants
from tm_domain.tenants import Quotas, Tenant
from tm_operator import conditions
from tm_operator.conditions import Condition
from tm_operator.kube import GROUP, VERSION, Kube
from tm_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

API_KEY = "apiKey"
STATUS_MANAGER = "tm-operator/tenant"


class StoreUnavailable(Exception):
    """MongoDB did not answer; the handler runs again later."""


def key_secret_name(tenant_id: str) -> str:
    return f"tm-tenant-{tenant_id}"


def tenant_from_spec(spec: Mapping[str, Any], *, key_digest: str | None) -> Tenant:
    quotas = spec.get("quotas") or {}
    return Tenant(
        tenant_id=str(spec["tenantId"]),
        display_name=str(spec.get("displayName") or ""),
        quotas=Quotas(
            api_calls_per_minute=int(quotas.get("apiCallsPerMinute", 60)),
            tasks_per_hour=int(quotas.get("tasksPerHour", 100)),
            tasks_per_day=int(quotas.get("tasksPerDay", 1000)),
        ),
        data_retention_days=int(spec.get("dataRetentionDays", 30)),
        api_key_sha256=key_digest,
    )


class Tenants:
    def __init__(
        self, kube: Kube, store: MongoTenantStore, settings: OperatorSettings
    ) -> None:
        self.kube = kube
        self.store = store
        self.settings = settings

    async def reconcile(self, body: Mapping[str, Any]) -> Condition:
        """Register the tenant and its key; write and return its Ready condition."""
        spec, meta = body["spec"], body["metadata"]
        tenant_id, uid = str(spec["tenantId"]), str(meta["uid"])

        try:
            # Another resource may already hold this tenant id: no key for us.
            owner = await self.store.owner(tenant_id)
            current = await self.store.get(tenant_id)
            if owner not in (None, uid) and current is not None and current.active:
                condition = Condition(
                    conditions.READY,
                    False,
                    "TenantIdTaken",
                    f"tenant id {tenant_id} is registered by another "
                    "TimeServiceTenant; delete that one or choose another id",
                )
                await self._report(body, condition, with_key=False)
                return condition

            key = await self._api_key(tenant_id, body)
            registration = await self.store.register(
                tenant_from_spec(spec, key_digest=tenants.digest(key)),
                owner_uid=uid,
                now=datetime.now(UTC),
            )
        except PyMongoError as exc:
            condition = Condition(
                conditions.READY,
                False,
                "StoreUnavailable",
                f"MongoDB did not answer ({type(exc).__name__}); retrying",
            )
            await self._report(body, condition, with_key=False)
            raise StoreUnavailable(str(condition.message)) from None

        if registration is Registration.TAKEN:
            # Lost a race with another resource between the check and the write.
            condition = Condition(
                conditions.READY,
                False,
                "TenantIdTaken",
                f"tenant id {tenant_id} is registered by another TimeServiceTenant",
            )
        else:
            condition = Condition(
                conditions.READY,
                True,
                "Registered",
                "registered in MongoDB with its quotas; API key in Secret "
                f"{self.settings.operator_namespace}/{key_secret_name(tenant_id)}",
            )
        await self._report(
            body, condition, with_key=registration is Registration.REGISTERED
        )
        log.info(
            "tenant reconciled",
            extra={"tenant_id": tenant_id, "reason": condition.reason},
        )

        return condition

    async def _api_key(self, tenant_id: str, body: Mapping[str, Any]) -> str:
        """The tenant's key from our Secret, or a new one written there first."""
        namespace = self.settings.operator_namespace
        name = key_secret_name(tenant_id)
        data = await self.kube.secret_data(namespace, name)
        if data is not None:
            existing = data.get(API_KEY, b"").decode(errors="replace")
            if tenants.key_tenant(existing) == tenant_id:
                return existing

        key = tenants.new_api_key(tenant_id)
        meta = body["metadata"]
        await self.kube.put_secret(
            namespace,
            name,
            {API_KEY: key.encode()},
            labels={f"{GROUP}/tenant": tenant_id},
            # A real cluster's garbage collector removes it with the tenant
            # too; the finalizer does here, where none runs.
            owner={
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TimeServiceTenant",
                "name": meta["name"],
                "uid": meta["uid"],
                "controller": True,
                "blockOwnerDeletion": False,
            },
        )
        log.info("tenant api key issued", extra={"tenant_id": tenant_id})

        return key

    async def _report(
        self, body: Mapping[str, Any], condition: Condition, *, with_key: bool
    ) -> None:
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        previous = (body.get("status") or {}).get("conditions") or []
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": [
                conditions.render(condition, generation=generation, previous=previous)
            ],
        }
        if with_key:
            status["apiKeySecret"] = {
                "namespace": self.settings.operator_namespace,
                "name": key_secret_name(str(body["spec"]["tenantId"])),
            }
        await self.kube.apply_status(body, status, manager=STATUS_MANAGER)

    async def remove(self, body: Mapping[str, Any]) -> str:
        """Apply the deletion policy, then drop the key; what was done, in words."""
        spec, meta = body["spec"], body["metadata"]
        tenant_id, uid = str(spec["tenantId"]), str(meta["uid"])
        policy = str(spec.get("deletionPolicy") or "Retain")

        try:
            if policy == "Delete":
                purged = await self.store.purge(tenant_id, owner_uid=uid)
                done = (
                    "data owned by another resource, left alone"
                    if purged is None
                    else f"deleted {purged.tasks} tasks and "
                    f"{purged.deliveries} delivery records"
                )
            else:
                kept = await self.store.deactivate(
                    tenant_id, owner_uid=uid, now=datetime.now(UTC)
                )
                done = "deactivated, data kept" if kept else "not registered by us"
        except PyMongoError as exc:
            raise StoreUnavailable(
                f"MongoDB did not answer ({type(exc).__name__})"
            ) from None

        await self.kube.delete_secret(
            self.settings.operator_namespace, key_secret_name(tenant_id)
        )
        log.info(
            "tenant removed",
            extra={"tenant_id": tenant_id, "policy": policy, "done": done},
        )

        return done

    async def purge_expired(self, body: Mapping[str, Any]) -> Purged | None:
        """Purge the tenant's data past its retention; None if not ours."""
        spec, meta = body["spec"], body["metadata"]
        tenant_id = str(spec["tenantId"])
        try:
            if await self.store.owner(tenant_id) != meta["uid"]:
                return None
            purged = await self.store.purge_expired(
                tenant_id,
                retention_days=int(spec.get("dataRetentionDays", 30)),
                now=datetime.now(UTC),
            )
        except PyMongoError as exc:
            raise StoreUnavailable(
                f"MongoDB did not answer ({type(exc).__name__})"
            ) from None
        if purged.tasks or purged.deliveries:
            log.info(
                "tenant data purged",
                extra={
                    "tenant_id": tenant_id,
                    "tasks": purged.tasks,
                    "deliveries": purged.deliveries,
                },
            )

        return purged
