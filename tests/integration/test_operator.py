"""The custom resources against the real API server, with the operator running.

The API server refuses bad resources by the CRDs' schemas and CEL rules; the
operator, under the chart's RBAC, says in each channel's status what is
wrong, registers tenants in MongoDB, and deletes them as their policy says.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.documents import task_document
from tests.support.kube import Kube, KubeError, condition
from tests.support.operator_fixtures import OperatorHome, new_namespace
from tm_domain import tenants

pytestmark = pytest.mark.integration

API = "timemanager.io/v1alpha1"
ACCOUNT_SID = "AC" + "1f" * 16
AUTH_TOKEN = "0123456789abcdef" * 2
SENDGRID_KEY = "SG.abcdefghijklmnopqrstuv.ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefg"


def secret(namespace: str, name: str, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def twilio_channel(namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "provider": "twilio",
        "twilio": {
            "accountSidRef": {"name": "twilio", "key": "accountSid"},
            "authTokenRef": {"name": "twilio", "key": "authToken"},
            "fromNumber": "+14155550123",
        },
        **spec,
    }
    return {
        "apiVersion": API,
        "kind": "ReminderChannel",
        "metadata": {"name": name, "namespace": namespace},
        "spec": values,
    }


def tenant(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "TimeServiceTenant",
        "metadata": {"name": name},
        "spec": {"tenantId": name, "displayName": f"Tenant {name}", **spec},
    }


def refused(kube: Kube, manifest: dict[str, Any]) -> str:
    with pytest.raises(KubeError) as caught:
        kube.create(manifest)
    assert caught.value.status == 422, caught.value
    return caught.value.message


def ready_reason(kube: Kube, kind: str, name: str, namespace: str | None = None) -> Any:
    return condition(kube.find(kind, name, namespace)).get("reason")


def wait_for_reason(
    kube: Kube, kind: str, name: str, reason: str, namespace: str | None = None
) -> dict[str, Any]:
    kube.wait_for(
        lambda: ready_reason(kube, kind, name, namespace) == reason,
        within=30,
        what=f"{kind} {name} to be {reason}",
        describe=lambda: json.dumps(
            (kube.find(kind, name, namespace) or {}).get("status")
        ),
    )
    return kube.get(kind, name, namespace)


@pytest.fixture
def namespace(kube: Kube) -> str:
    return new_namespace(kube, "tm-test")


@pytest.fixture
def tenant_name() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- schemas


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"provider": "sendgrid"},
            "spec.provider is sendgrid: set spec.sendgrid and no other provider block",
        ),
        (
            {
                "sendgrid": {
                    "apiKeyRef": {"name": "s", "key": "k"},
                    "fromEmail": "a@b.io",
                }
            },
            "spec.provider is twilio: set spec.twilio and no other provider block",
        ),
        ({"rateLimit": {"perMinute": 0}}, "spec.rateLimit.perMinute"),
        ({"rateLimit": {"perMinute": 100000}}, "spec.rateLimit.perMinute"),
        ({"provider": "pigeon"}, 'Unsupported value: "pigeon"'),
    ],
)
def test_a_channel_the_schema_refuses_is_refused_at_apply(
    kube: Kube, namespace: str, change: dict[str, Any], message: str
) -> None:
    manifest = twilio_channel(namespace, "bad")
    manifest["spec"].update(change)

    text = refused(kube, manifest)

    assert message in text


def test_a_sender_number_that_is_not_e164_is_refused_at_apply(
    kube: Kube, namespace: str
) -> None:
    manifest = twilio_channel(namespace, "bad")
    manifest["spec"]["twilio"]["fromNumber"] = "4155550123"

    text = refused(kube, manifest)

    assert "spec.twilio.fromNumber" in text


def test_a_channel_cannot_change_its_provider(kube: Kube, namespace: str) -> None:
    kube.create(twilio_channel(namespace, "sms"))

    with pytest.raises(KubeError) as caught:
        kube.merge(
            "ReminderChannel",
            "sms",
            {
                "spec": {
                    "provider": "sendgrid",
                    "twilio": None,
                    "sendgrid": {
                        "apiKeyRef": {"name": "s", "key": "k"},
                        "fromEmail": "a@b.io",
                    },
                }
            },
            namespace,
        )

    assert caught.value.status == 422
    assert "spec.provider cannot change after creation" in caught.value.message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tenantId": "Not_A_Label"}, "spec.tenantId"),
        ({"quotas": {"tasksPerHour": 2000}}, "tasksPerHour cannot exceed"),
        ({"deletionPolicy": "Orphan"}, 'Unsupported value: "Orphan"'),
        ({"dataRetentionDays": 0}, "spec.dataRetentionDays"),
    ],
)
def test_a_tenant_the_schema_refuses_is_refused_at_apply(
    kube: Kube, tenant_name: str, spec: dict[str, Any], message: str
) -> None:
    text = refused(kube, tenant(tenant_name, **spec))

    assert message in text


def test_a_tenant_gets_the_design_defaults_and_keeps_its_id(
    kube: Kube, tenant_name: str
) -> None:
    created = kube.create(tenant(tenant_name))
    try:
        with pytest.raises(KubeError) as caught:
            kube.merge(
                "TimeServiceTenant", tenant_name, {"spec": {"tenantId": "other"}}
            )
    finally:
        kube.delete("TimeServiceTenant", tenant_name)

    assert created["spec"]["quotas"] == {
        "apiCallsPerMinute": 60,
        "tasksPerHour": 100,
        "tasksPerDay": 1000,
    }
    assert created["spec"]["dataRetentionDays"] == 30
    assert created["spec"]["deletionPolicy"] == "Retain"
    assert "spec.tenantId cannot change after creation" in caught.value.message


# ---------------------------------------------------------------- channels


def test_a_channel_is_ready_only_once_its_secret_is_right(
    kube: Kube, operator: OperatorHome, namespace: str
) -> None:
    kube.create(twilio_channel(namespace, "sms"))
    missing = wait_for_reason(
        kube, "ReminderChannel", "sms", "SecretNotFound", namespace
    )

    kube.create(secret(namespace, "twilio", accountSid=ACCOUNT_SID))
    no_key = wait_for_reason(kube, "ReminderChannel", "sms", "KeyMissing", namespace)

    kube.apply(
        secret(namespace, "twilio", accountSid=ACCOUNT_SID, authToken=AUTH_TOKEN + "\n")
    )
    padded = wait_for_reason(kube, "ReminderChannel", "sms", "KeyMalformed", namespace)

    kube.apply(
        secret(namespace, "twilio", accountSid=ACCOUNT_SID, authToken=AUTH_TOKEN)
    )
    valid = wait_for_reason(kube, "ReminderChannel", "sms", "Valid", namespace)

    kube.merge("Secret", "twilio", {"data": {"accountSid": None}}, namespace)
    removed = wait_for_reason(kube, "ReminderChannel", "sms", "KeyMissing", namespace)

    assert condition(missing)["status"] == "False"
    assert f"Secret {namespace}/twilio" in condition(missing)["message"]
    assert "'authToken'" in condition(no_key)["message"]
    assert "whitespace" in condition(padded)["message"]
    assert condition(valid)["status"] == "True"
    assert valid["status"]["observedGeneration"] == valid["metadata"]["generation"]
    assert condition(valid)["observedGeneration"] == valid["metadata"]["generation"]
    assert "'accountSid'" in condition(removed)["message"]
    assert condition(removed)["status"] == "False"
    everything = json.dumps([missing, no_key, padded, valid, removed])
    assert AUTH_TOKEN not in everything and ACCOUNT_SID not in everything
    assert AUTH_TOKEN not in operator.process.output()


def test_a_number_no_plan_assigns_is_reported_and_suspension_is_shown(
    kube: Kube, operator: OperatorHome, namespace: str
) -> None:
    kube.create(
        secret(namespace, "twilio", accountSid=ACCOUNT_SID, authToken=AUTH_TOKEN)
    )
    channel = twilio_channel(namespace, "sms")
    channel["spec"]["twilio"]["fromNumber"] = "+19995550100"
    kube.create(channel)

    invalid = wait_for_reason(
        kube, "ReminderChannel", "sms", "InvalidFromNumber", namespace
    )
    kube.merge(
        "ReminderChannel",
        "sms",
        {"spec": {"twilio": {"fromNumber": "+14155550123"}, "suspend": True}},
        namespace,
    )
    suspended = wait_for_reason(kube, "ReminderChannel", "sms", "Suspended", namespace)

    assert condition(invalid)["status"] == "False"
    assert condition(suspended)["status"] == "False"
    assert (
        suspended["status"]["observedGeneration"] == suspended["metadata"]["generation"]
    )


# ---------------------------------------------------------------- tenants


def test_a_tenant_becomes_ready_with_its_quotas_and_one_api_key(
    kube: Kube, operator: OperatorHome, tenant_name: str
) -> None:
    kube.create(tenant(tenant_name, quotas={"apiCallsPerMinute": 120}))
    try:
        ready = wait_for_reason(kube, "TimeServiceTenant", tenant_name, "Registered")
        key_ref = ready["status"]["apiKeySecret"]
        key_secret = kube.get("Secret", key_ref["name"], key_ref["namespace"])
        key = base64.b64decode(key_secret["data"]["apiKey"]).decode()

        # A restart converges on what is there: same key, one record.
        operator.process.restart()
        kube.merge(
            "TimeServiceTenant", tenant_name, {"spec": {"displayName": "Renamed"}}
        )
        kube.wait_for(
            lambda: (
                (operator.db.tenants.find_one({"_id": tenant_name}) or {}).get(
                    "displayName"
                )
                == "Renamed"
            ),
            what="the new display name in MongoDB",
        )
        again = kube.get("Secret", key_ref["name"], key_ref["namespace"])
        record = operator.db.tenants.find_one({"_id": tenant_name})
        count = operator.db.tenants.count_documents({"_id": tenant_name})
        channels_ready = kube.wait_for(
            lambda: condition(
                kube.get("TimeServiceTenant", tenant_name), "ChannelsReady"
            ),
            what="the ChannelsReady condition",
        )
    finally:
        kube.delete("TimeServiceTenant", tenant_name)

    assert condition(ready)["status"] == "True"
    assert key_ref["namespace"] == operator.namespace
    assert tenants.key_tenant(key) == tenant_name
    assert again["data"] == key_secret["data"]
    assert count == 1
    assert record["active"] is True
    assert record["quotas"] == {
        "apiCallsPerMinute": 120,
        "tasksPerHour": 100,
        "tasksPerDay": 1000,
    }
    assert record["dataRetentionDays"] == 30
    assert record["apiKeySha256"] == tenants.digest(key)
    assert key not in json.dumps(record, default=str)
    assert channels_ready["reason"] == "NoChannels"
    assert key not in operator.process.output()


@pytest.mark.parametrize("policy", ["Delete", "Retain"])
def test_deleting_a_tenant_does_what_its_policy_says(
    kube: Kube, operator: OperatorHome, tenant_name: str, policy: str
) -> None:
    kube.create(tenant(tenant_name, deletionPolicy=policy))
    ready = wait_for_reason(kube, "TimeServiceTenant", tenant_name, "Registered")
    key_ref = ready["status"]["apiKeySecret"]
    later = datetime.now(UTC) + timedelta(hours=1)
    theirs = [task_document(send_at=later, tenant_id=tenant_name) for _ in range(3)]
    other = task_document(send_at=later, tenant_id=f"{tenant_name}-other")
    operator.db.visitor_time_tasks.insert_many([*theirs, other])

    kube.delete("TimeServiceTenant", tenant_name)
    kube.wait_for(
        lambda: kube.find("TimeServiceTenant", tenant_name) is None,
        what="the finalizer to let the tenant go",
    )

    left = operator.db.visitor_time_tasks.count_documents({"tenantId": tenant_name})
    record = operator.db.tenants.find_one({"_id": tenant_name})
    assert kube.find("Secret", key_ref["name"], key_ref["namespace"]) is None
    assert operator.db.visitor_time_tasks.count_documents({"_id": other["_id"]}) == 1
    if policy == "Delete":
        assert left == 0
        assert record is None
    else:
        assert left == 3
        assert record is not None and record["active"] is False
        assert record["deactivatedAt"] is not None


def test_deleted_tasks_past_the_retention_are_purged(
    kube: Kube, operator: OperatorHome, tenant_name: str
) -> None:
    now = datetime.now(UTC)
    expired = task_document(send_at=now, tenant_id=tenant_name)
    expired["deletedAt"] = now - timedelta(days=3)
    recent = task_document(send_at=now, tenant_id=tenant_name)
    recent["deletedAt"] = now - timedelta(hours=1)
    live = task_document(send_at=now, tenant_id=tenant_name)
    operator.db.visitor_time_tasks.insert_many([expired, recent, live])

    kube.create(tenant(tenant_name, dataRetentionDays=2, deletionPolicy="Delete"))
    try:
        kube.wait_for(
            lambda: (
                operator.db.visitor_time_tasks.count_documents({"_id": expired["_id"]})
                == 0
            ),
            within=60,
            what="the expired task to be purged",
        )
        remaining = {
            doc["_id"]
            for doc in operator.db.visitor_time_tasks.find({"tenantId": tenant_name})
        }
    finally:
        kube.delete("TimeServiceTenant", tenant_name)

    assert remaining == {recent["_id"], live["_id"]}


def test_a_tenant_names_its_channels_and_says_which_are_not_ready(
    kube: Kube, operator: OperatorHome, namespace: str, tenant_name: str
) -> None:
    kube.create(twilio_channel(namespace, "sms"))
    refs = [
        {"namespace": namespace, "name": "sms"},
        {"namespace": namespace, "name": "nope"},
    ]
    kube.create(tenant(tenant_name, channels=refs))
    try:

        def channels_ready() -> dict[str, Any]:
            return condition(
                kube.find("TimeServiceTenant", tenant_name), "ChannelsReady"
            )

        kube.wait_for(
            lambda: channels_ready().get("reason") == "ChannelNotFound",
            what="ChannelNotFound",
            describe=lambda: str(channels_ready()),
        )
        missing = channels_ready()
        kube.merge("TimeServiceTenant", tenant_name, {"spec": {"channels": refs[:1]}})
        kube.wait_for(
            lambda: channels_ready().get("reason") == "ChannelNotReady",
            what="ChannelNotReady",
            describe=lambda: str(channels_ready()),
        )
        not_ready = channels_ready()
        ready = condition(kube.get("TimeServiceTenant", tenant_name))
    finally:
        kube.delete("TimeServiceTenant", tenant_name)

    assert f"{namespace}/nope" in missing["message"]
    assert f"{namespace}/sms (SecretNotFound)" in not_ready["message"]
    assert ready["reason"] == "Registered"


# ---------------------------------------------------------------- README


def readme_manifests() -> list[dict[str, Any]]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("## Custom resources", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.S)
    return [doc for block in blocks for doc in yaml.safe_load_all(block) if doc]


def test_the_readme_manifests_apply_and_come_ready(
    kube: Kube, operator: OperatorHome
) -> None:
    manifests = readme_manifests()
    namespace = new_namespace(kube, "tm-readme")
    tenant_id = f"readme-{uuid.uuid4().hex[:8]}"
    for manifest in manifests:
        if manifest["metadata"].get("namespace") == "team-a":
            manifest["metadata"]["namespace"] = namespace
        if manifest["kind"] == "TimeServiceTenant":
            manifest["metadata"]["name"] = tenant_id
            manifest["spec"]["tenantId"] = tenant_id
            manifest["spec"]["channels"][0]["namespace"] = namespace

    try:
        for manifest in manifests:
            kube.apply(manifest)
        channel = wait_for_reason(kube, "ReminderChannel", "sms", "Valid", namespace)
        registered = wait_for_reason(kube, "TimeServiceTenant", tenant_id, "Registered")
        channels_ready = kube.wait_for(
            lambda: (
                condition(
                    kube.get("TimeServiceTenant", tenant_id), "ChannelsReady"
                ).get("reason")
                == "AllReady"
            ),
            what="the tenant's channels to be ready",
        )
    finally:
        kube.delete("TimeServiceTenant", tenant_id)

    assert sorted(m["kind"] for m in manifests) == [
        "ReminderChannel",
        "Secret",
        "TimeServiceTenant",
    ]
    assert condition(channel)["status"] == "True"
    assert condition(registered)["status"] == "True"
    assert channels_ready
