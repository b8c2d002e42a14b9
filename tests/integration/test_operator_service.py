"""A tenant made by the operator, as the time service sees it: its key, its
quotas, its deactivation. The operator runs as a process against the real
API server; the service reads the operator's database."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from tests.integration.conftest import TASKS
from tests.integration.test_operator import tenant, wait_for_reason
from tests.support.kube import Kube
from tests.support.operator_fixtures import OperatorHome
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

ADMIN_TENANTS = "/api/v1/admin/tenants"


async def test_an_operator_tenant_key_works_its_quota_applies_and_retain_deactivates(
    kube: Kube,
    operator: OperatorHome,
    settings: ServiceSettings,
    started: Any,
    bearer: Any,
) -> None:
    name = f"svc-{int(time.time() * 1000) % 10**8}"
    kube.create(tenant(name, quotas={"apiCallsPerMinute": 2}, deletionPolicy="Retain"))
    ready = wait_for_reason(kube, "TimeServiceTenant", name, "Registered")
    ref = ready["status"]["apiKeySecret"]
    secret = kube.get("Secret", ref["name"], ref["namespace"])
    key = base64.b64decode(secret["data"]["apiKey"]).decode()
    chosen = settings.model_copy(
        update={"mongodb_database": operator.database, "tenant_cache_s": 0}
    )
    daily = f"{TASKS}/daily?date=2030-01-15"

    async with started(chosen) as (_, client):
        by_key = await client.get(ADMIN_TENANTS, headers={"X-API-Key": key})
        calls = [
            (await client.get(daily, headers=bearer(tenant=name))).status_code
            for _ in range(3)
        ]
        kube.delete("TimeServiceTenant", name)
        kube.wait_for(
            lambda: (
                (operator.db.tenants.find_one({"_id": name}) or {}).get("active")
                is False
            ),
            what="the tenant deactivated",
        )
        after = await client.get(daily, headers=bearer(tenant=name, sub="other"))

    assert by_key.status_code == 200, by_key.text
    assert by_key.json()["data"][0]["tenantId"] == name
    assert calls == [200, 200, 429]
    assert after.status_code == 403
    assert after.json()["error"]["code"] == "TENANT_INACTIVE"
