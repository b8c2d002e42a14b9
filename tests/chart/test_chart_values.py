"""The chart's values: the schema, and every TM_ setting reaching its pod.

The settings classes are the authority on what each deployable reads. The
tests enumerate their fields, render the chart with a value for every one,
rebuild each component's environment from what the pod would see (its
ConfigMap, the chart's Secret, the downward API) and load the settings
class from it: a setting the chart cannot set, or sets to something the
class refuses, fails here.
"""

from __future__ import annotations

import base64
import json
import os
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from tests.support.charts import CHART, ROOT, Helm, HelmFailed, Manifest, find
from tm_adapters.settings import ConnectionSettings
from tm_operator.settings import OperatorSettings
from tm_service.settings import ServiceSettings
from tm_streams.settings import StreamsSettings

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())

CLASSES: dict[str, type[BaseSettings]] = {
    "service": ServiceSettings,
    "streams": StreamsSettings,
    "operator": OperatorSettings,
}
PACKAGES = {
    "service": ROOT / "services" / "tm_service",
    "streams": ROOT / "streams" / "tm_streams",
    "operator": ROOT / "operator" / "tm_operator",
}
KAFKA = {
    name for name in ConnectionSettings.model_fields if name.startswith("kafka_")
} | {"streams_app_id"}
REDIS = {"redis_url", "redis_password"}
# Settings a component inherits but never reads: the chart leaves them out,
# so no credential reaches a pod that has no use for it.
NOT_READ = {"service": set(), "streams": REDIS, "operator": KAFKA | REDIS}
# Objects whose keys are the user's own (labels, peers, affinity terms).
FREE_FORM = {
    "global",
    "affinity",
    "podAnnotations",
    "podLabels",
    "nodeSelector",
    "annotations",
    "labels",
    "requests",
    "limits",
}

# A value for every setting of the `settings` maps, none of them a default.
STRINGS = {
    "serviceHost": "::",
    "twilioApiBase": "https://twilio.internal.test",
    "sendgridApiHost": "https://sendgrid.internal.test",
    "streamsWebHost": "::",
    "redisKeyPrefix": "acme-tm:",
    "corsOrigins": "https://app.example.test,https://admin.example.test",
}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def settings_map_schema(component: str) -> dict[str, Any]:
    properties: dict[str, Any] = SCHEMA["properties"][component]["properties"]
    return dict(properties["settings"]["properties"])


def example(key: str, schema: dict[str, Any]) -> Any:
    """A value the schema accepts, at a bound where there is one."""
    if "enum" in schema:
        return schema["enum"][-1]
    if schema["type"] == "boolean":
        # Each switch's default is its own; the other side shows it arrives.
        return key not in ("rateLimitsEnabled", "viewCacheEnabled", "viewFastPath")
    if schema["type"] in {"integer", "number"}:
        value = schema.get("maximum", schema.get("minimum", 0) + 7)
        # Ports must differ from the probes' defaults to show they follow.
        return value - 1 if key.endswith("Port") else value
    return STRINGS[key]


def every_setting_values() -> dict[str, Any]:
    """Values that set every TM_ setting of every component, secrets inline."""
    values: dict[str, Any] = {
        "environment": "production",
        "log": {"level": "DEBUG", "format": "console"},
        "mongodb": {
            "uri": "mongodb://tm:pw@mongo.internal.test:27017/?tls=true",
            "database": "tm_chart",
            "timeoutMs": 7000,
            "tls": {"secretName": "mongo-ca"},
        },
        "kafka": {
            "bootstrap": "k1.internal.test:9093,k2.internal.test:9093",
            "taskEventsTopic": "acme-task-events",
            "taskEventsPartitions": 12,
            "securityProtocol": "SASL_SSL",
            "sasl": {
                "mechanism": "SCRAM-SHA-256",
                "username": "tm-app",
                "password": "kafka-password-1",
            },
            "tls": {
                "secretName": "kafka-tls",
                "certKey": "tls.crt",
                "keyKey": "tls.key",
            },
        },
        "redis": {
            "url": "rediss://redis.internal.test:6380/1",
            "password": "redis-password-1",
        },
        "service": {"jwt": {"secret": "j" * 40}},
        "streams": {
            "twilio": {
                "accountSid": "AC" + "1f" * 16,
                "fromNumber": "+14155550123",
                "authToken": "twilio-token-1",
            },
            "sendgrid": {"fromEmail": "reminders@example.test", "apiKey": "SG.key-1"},
        },
        "operator": {},
    }
    for component in CLASSES:
        values[component]["settings"] = {
            key: example(key, schema)
            for key, schema in settings_map_schema(component).items()
        }

    return values


def pod_environment(manifests: list[Manifest], component: str) -> dict[str, str]:
    """The TM_ variables a component's container starts with."""
    [deployment] = [
        doc
        for doc in manifests
        if doc["kind"] == "Deployment"
        and doc["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    pod_name = f"{deployment['metadata']['name']}-7d9f8-x2x4q"

    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        config = find(manifests, "ConfigMap", source["configMapRef"]["name"])
        environment |= config["data"]
    for entry in container.get("env", []):
        if "value" in entry:
            environment[entry["name"]] = entry["value"]
            continue
        reference = entry["valueFrom"]
        if "fieldRef" in reference:
            assert reference["fieldRef"]["fieldPath"] == "metadata.name"
            environment[entry["name"]] = pod_name
        else:
            key = reference["secretKeyRef"]
            secret = find(manifests, "Secret", key["name"])
            environment[entry["name"]] = base64.b64decode(
                secret["data"][key["key"]]
            ).decode()

    return environment


def load_settings(
    cls: type[BaseSettings],
    environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> BaseSettings:
    for name in list(os.environ):
        if name.startswith("TM_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    return cls()


def plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list):
        return ",".join(value)
    return value


# --------------------------------------------------------- every setting


@pytest.fixture(scope="module")
def every_setting_manifests(helm: Helm) -> list[Manifest]:
    return helm.template(values=every_setting_values(), namespace="acme")


@pytest.mark.parametrize("component", sorted(CLASSES))
def test_every_tm_setting_of_a_component_reaches_its_pod(
    component: str,
    every_setting_manifests: list[Manifest],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cls = CLASSES[component]
    environment = pod_environment(every_setting_manifests, component)

    settings = load_settings(cls, environment, monkeypatch)

    wanted = {f"TM_{name.upper()}" for name in cls.model_fields} - {
        f"TM_{name.upper()}" for name in NOT_READ[component]
    }
    missing = wanted - set(environment)
    assert not missing, f"{component} cannot be given {sorted(missing)}"
    unknown = {name for name in environment if name.startswith("TM_")} - {
        f"TM_{name.upper()}" for name in cls.model_fields
    }
    assert not unknown, f"{component} is given settings it lacks: {sorted(unknown)}"
    given = every_setting_values()[component]["settings"]
    for key, value in given.items():
        field = next(name for name in cls.model_fields if camel(name) == key)
        assert plain(getattr(settings, field)) == value, field


@pytest.mark.parametrize("component", sorted(CLASSES))
def test_connection_settings_and_secrets_arrive_as_given(
    component: str,
    every_setting_manifests: list[Manifest],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = every_setting_values()
    environment = pod_environment(every_setting_manifests, component)

    settings = load_settings(CLASSES[component], environment, monkeypatch)

    read = {
        name: plain(getattr(settings, name)) for name in type(settings).model_fields
    }
    assert read["environment"] == "production"
    assert (read["log_level"], read["log_format"]) == ("DEBUG", "console")
    assert read["mongodb_uri"] == values["mongodb"]["uri"]
    assert read["mongodb_database"] == "tm_chart"
    assert read["mongodb_timeout_ms"] == 7000
    if "kafka_bootstrap" not in NOT_READ[component]:
        assert read["kafka_bootstrap"] == values["kafka"]["bootstrap"]
        assert read["kafka_task_events_partitions"] == 12
        assert read["kafka_security_protocol"] == "SASL_SSL"
        assert read["kafka_sasl_mechanism"] == "SCRAM-SHA-256"
        assert read["kafka_sasl_username"] == "tm-app"
        assert read["kafka_sasl_password"] == "kafka-password-1"
        assert read["kafka_ssl_ca_file"] == "/etc/time-manager/tls/kafka/ca.crt"
        assert read["kafka_ssl_cert_file"] == "/etc/time-manager/tls/kafka/tls.crt"
    if "redis_url" not in NOT_READ[component]:
        assert read["redis_url"] == values["redis"]["url"]
        assert read["redis_password"] == "redis-password-1"
    if component == "service":
        assert read["jwt_secret"] == "j" * 40
    if component == "streams":
        assert read["twilio_account_sid"] == values["streams"]["twilio"]["accountSid"]
        assert read["twilio_auth_token"] == "twilio-token-1"
        assert read["twilio_from_number"] == "+14155550123"
        assert read["sendgrid_api_key"] == "SG.key-1"
        assert read["sendgrid_from_email"] == "reminders@example.test"
        assert read["channels_secret"] == "acme/tm-reminder-channels"
        assert read["worker_id"].startswith("tm-time-manager-streams-")
    if component == "operator":
        assert read["operator_namespace"] == "acme"
        assert read["channels_secret"] == "tm-reminder-channels"


@pytest.mark.parametrize("component", sorted(NOT_READ))
def test_settings_left_out_of_a_pod_are_never_read_by_its_code(
    component: str,
) -> None:
    source = "\n".join(
        path.read_text() for path in PACKAGES[component].rglob("*.py")
    ).lower()

    read = {name for name in NOT_READ[component] if name in source}

    assert not read
    # NB: the code reaches a server through its client module too; the
    # name of the server must not appear at all.
    if REDIS <= NOT_READ[component]:
        assert "redis" not in source
    if KAFKA <= NOT_READ[component]:
        assert "kafka" not in source


def test_the_default_values_load_in_every_settings_class(
    default_manifests: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    for component, cls in CLASSES.items():
        environment = pod_environment(default_manifests, component)

        settings = load_settings(cls, environment, monkeypatch)

        assert plain(settings.environment) == "production", component  # type: ignore[attr-defined]


# ----------------------------------------------------------------- schema


@pytest.mark.parametrize(
    ("values", "fragments"),
    [
        pytest.param(
            {"service": {"replicas": "two"}},
            ["/service/replicas", "got string, want integer"],
            id="wrong type",
        ),
        pytest.param(
            {"kafka": {"securityProtocol": "TLS"}},
            ["/kafka/securityProtocol", "value must be one of", "SASL_SSL"],
            id="unknown protocol",
        ),
        pytest.param(
            {"environment": "staging"},
            ["/environment", "value must be one of", "'production'"],
            id="unknown environment",
        ),
        pytest.param(
            {"log": {"level": "TRACE"}},
            ["/log/level", "value must be one of"],
            id="unknown log level",
        ),
        pytest.param(
            {"kafka": {"sasl": {"mechanism": "GSSAPI"}}},
            ["/kafka/sasl/mechanism", "value must be one of"],
            id="unsupported sasl mechanism",
        ),
        pytest.param(
            {"service": {"settings": {"jwtLeewaySeconds": 5}}},
            ["/service/settings", "additional properties 'jwtLeewaySeconds'"],
            id="misspelt setting",
        ),
        pytest.param(
            {"streams": {"settings": {"deliveryMaxAttempts": 0}}},
            ["/streams/settings/deliveryMaxAttempts", "minimum"],
            id="setting under its bound",
        ),
        pytest.param(
            {"streams": {"replicas": 1001}},
            ["/streams/replicas", "maximum"],
            id="worker replicas over the partitions' bound",
        ),
        pytest.param(
            {"service": {"resources": {"limits": {"memory": None}}}},
            ["/service/resources/limits", "missing property 'memory'"],
            id="no memory limit",
        ),
        pytest.param(
            {"operator": {"channelsSecret": "Not_A_Name"}},
            ["/operator/channelsSecret"],
            id="invalid secret name",
        ),
        pytest.param(
            {"ingress": {"enabled": "yes"}},
            ["/ingress/enabled", "got string, want boolean"],
            id="boolean as text",
        ),
        pytest.param(
            {"mongodb": {"uri": "postgres://db:5432/"}},
            ["/mongodb/uri"],
            id="not a mongodb uri",
        ),
    ],
)
def test_the_schema_refuses_bad_values_saying_where_and_why(
    helm: Helm, values: dict[str, Any], fragments: list[str]
) -> None:
    with pytest.raises(HelmFailed) as refused:
        helm.template(values=values)

    message = refused.value.stderr
    assert "values don't meet the specifications of the schema" in message
    for fragment in fragments:
        assert fragment in message


def test_helm_install_refuses_a_wrong_type_before_touching_the_cluster(
    helm: Helm,
) -> None:
    with pytest.raises(HelmFailed) as refused:
        helm.run(
            "install",
            "tm-refused",
            str(CHART),
            "--namespace",
            "tm-refused",
            "--dry-run=client",
            "--set-string",
            "streams.replicas=3",
        )

    assert "/streams/replicas" in refused.value.stderr
    assert "got string, want integer" in refused.value.stderr


def schema_paths(schema: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every object schema of the values schema, by its path."""
    resolved = resolve(schema)
    found = {prefix or "/": resolved}
    for key, child in resolved.get("properties", {}).items():
        found |= schema_paths(child, f"{prefix}/{key}")
    items = resolved.get("items")
    if isinstance(items, dict):
        found |= schema_paths(items, f"{prefix}/*")

    return found


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        name = schema["$ref"].removeprefix("#/definitions/")
        return dict(SCHEMA["definitions"][name])
    return schema


def value_paths(value: Any, prefix: str = "") -> set[str]:
    found = {prefix or "/"}
    if isinstance(value, dict):
        for key, child in value.items():
            if prefix.rsplit("/", 1)[-1] in FREE_FORM:
                continue
            found |= value_paths(child, f"{prefix}/{key}")
    elif isinstance(value, list):
        for child in value:
            found |= value_paths(child, f"{prefix}/*")

    return found


@pytest.mark.parametrize(
    "values_file",
    ["values.yaml", "values-production.yaml", "values-dev.yaml"],
)
def test_the_schema_declares_every_value_of_the_values_files(values_file: str) -> None:
    values = yaml.safe_load((CHART / values_file).read_text())
    declared = schema_paths(SCHEMA)

    undeclared = {
        path
        for path in value_paths(values)
        if path not in declared
        and not any(
            path.startswith(f"{d}/") for d in declared if d.endswith(tuple(FREE_FORM))
        )
        and "/to/" not in path
        and "From/" not in path
        and "/tolerations/" not in path
        and "/topologySpreadConstraints/" not in path
    }

    assert not undeclared


def test_every_object_of_the_schema_refuses_keys_it_does_not_declare() -> None:
    open_objects = {
        path
        for path, schema in schema_paths(SCHEMA).items()
        if schema.get("type") == "object"
        and schema.get("additionalProperties") is not False
        and path.rsplit("/", 1)[-1] not in FREE_FORM
        and not path.endswith("/*")
    }

    assert open_objects == set()


def test_every_value_has_a_default_in_values_yaml() -> None:
    # The schema requires what values.yaml sets, so a value dropped from
    # the defaults cannot leave a template reading nothing.
    def required_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
        resolved = resolve(schema)
        found = {f"{prefix}/{key}" for key in resolved.get("required", [])}
        for key, child in resolved.get("properties", {}).items():
            if key in resolved.get("required", []):
                found |= required_paths(child, f"{prefix}/{key}")
        return found

    missing = {
        path
        for path in required_paths(SCHEMA)
        if not value_exists(VALUES, path.strip("/").split("/"))
    }

    assert not missing


def value_exists(values: Any, keys: list[str]) -> bool:
    for key in keys:
        if not isinstance(values, dict) or key not in values:
            return False
        values = values[key]
    return True


@pytest.mark.parametrize("component", sorted(CLASSES))
def test_the_bounds_of_each_setting_are_those_of_its_settings_class(
    component: str,
) -> None:
    cls = CLASSES[component]
    schema = settings_map_schema(component)

    for key, declared in schema.items():
        field = cls.model_fields[next(n for n in cls.model_fields if camel(n) == key)]
        bounds: dict[str, Any] = {}
        for rule in field.metadata:
            for attribute, name in (
                ("ge", "minimum"),
                ("le", "maximum"),
                ("min_length", "minLength"),
                ("max_length", "maxLength"),
                ("pattern", "pattern"),
            ):
                if getattr(rule, attribute, None) is not None:
                    bounds[name] = getattr(rule, attribute)
        if typing.get_origin(field.annotation) is typing.Literal:
            bounds["enum"] = list(typing.get_args(field.annotation))
        kept = {name: declared[name] for name in bounds if name in declared}
        assert kept == bounds, key
        assert not {"minimum", "maximum", "enum"} - set(bounds) & set(declared), key
