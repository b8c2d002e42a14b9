"""What `helm template` renders: pods, security, probes, labels, RBAC, opt-ins.

These read the manifests helm renders from the chart in the working tree,
with the default values and with the example production values (every
opt-in on), and assert what a security review and a platform team look at.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.charts import (
    CHART,
    CRD_CHART,
    DEV_VALUES,
    PRODUCTION_VALUES,
    Helm,
    HelmFailed,
    Manifest,
    find,
    kinds,
    secret_data,
)
from tests.support.kube import RBAC_DIR

COMPONENTS = ("service", "streams", "operator")
OPT_INS = {
    "Ingress",
    "NetworkPolicy",
    "HorizontalPodAutoscaler",
    "PodDisruptionBudget",
    "ServiceMonitor",
    "PrometheusRule",
}
# The pods' scratch mount point, which these tests only read in manifests.
SCRATCH = "/tmp"  # noqa: S108
SELECTOR_KEYS = {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
LABEL_KEYS = SELECTOR_KEYS | {
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}


def deployments(manifests: list[Manifest]) -> dict[str, Manifest]:
    """The Deployments by component."""
    return {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for doc in manifests
        if doc["kind"] == "Deployment"
    }


def container(deployment: Manifest) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def config_of(manifests: list[Manifest], component: str) -> dict[str, str]:
    """The ConfigMap data a component's container reads whole."""
    [source] = container(deployments(manifests)[component])["envFrom"]
    name = source["configMapRef"]["name"]
    return dict(find(manifests, "ConfigMap", name)["data"])


def all_manifests_cases() -> list[Any]:
    return [
        pytest.param("default_manifests", id="default values"),
        pytest.param("production_manifests", id="production values"),
    ]


# -------------------------------------------------------------------- lint


@pytest.mark.parametrize(
    ("chart", "values"),
    [
        pytest.param(CHART, None, id="defaults"),
        pytest.param(CHART, PRODUCTION_VALUES, id="production"),
        pytest.param(CHART, DEV_VALUES, id="development"),
        pytest.param(CRD_CHART, None, id="crds"),
    ],
)
def test_helm_lint_strict_passes(helm: Helm, chart: Path, values: Path | None) -> None:
    args = ["lint", "--strict", str(chart)]
    if values is not None:
        args += ["--values", str(values)]

    done = helm.run(*args)

    assert "0 chart(s) failed" in done.stdout


# ---------------------------------------------------------------- opt-ins


def test_the_defaults_render_the_three_components_and_no_opt_in(
    default_manifests: list[Manifest],
) -> None:
    rendered = set(kinds(default_manifests))

    assert set(deployments(default_manifests)) == set(COMPONENTS)
    assert not rendered & OPT_INS
    assert "ConfigMap" in rendered and "Secret" in rendered


def test_the_production_example_turns_every_opt_in_on(
    production_manifests: list[Manifest],
) -> None:
    rendered = kinds(production_manifests)

    assert OPT_INS <= set(rendered)
    # Default deny, then one policy per component.
    assert rendered.count("NetworkPolicy") == 4
    assert rendered.count("ServiceMonitor") == 2
    dashboards = [
        doc
        for doc in production_manifests
        if doc["kind"] == "ConfigMap" and "time-manager.json" in doc.get("data", {})
    ]
    assert len(dashboards) == 1
    assert dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_autoscaling_takes_the_replica_count_over(helm: Helm) -> None:
    manifests = helm.template(values={"service": {"autoscaling": {"enabled": True}}})

    service = deployments(manifests)["service"]
    hpa = find(manifests, "HorizontalPodAutoscaler")

    assert "replicas" not in service["spec"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == service["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)


def test_without_the_operator_the_worker_has_no_token_and_no_role(
    helm: Helm,
) -> None:
    manifests = helm.template(values={"operator": {"enabled": False}})

    streams = deployments(manifests)["streams"]["spec"]["template"]["spec"]

    assert set(deployments(manifests)) == {"service", "streams"}
    assert streams["automountServiceAccountToken"] is False
    assert "TM_CHANNELS_SECRET" not in config_of(manifests, "streams")
    assert not {"Role", "RoleBinding", "ClusterRole"} & set(kinds(manifests))


@pytest.mark.parametrize(
    ("values", "required"),
    [
        ({}, "true"),
        ({"operator": {"enabled": False}}, None),
        ({"service": {"settings": {"requireTenantRegistration": False}}}, "false"),
    ],
    ids=["operator", "no operator", "explicitly off"],
)
def test_with_the_operator_the_service_requires_registered_tenants(
    helm: Helm, values: dict[str, Any], required: str | None
) -> None:
    config = config_of(helm.template(values=values), "service")

    assert config.get("TM_REQUIRE_TENANT_REGISTRATION") == required


# ------------------------------------------------------------------ labels


@pytest.mark.parametrize("manifests_fixture", all_manifests_cases())
def test_every_object_and_pod_template_carries_the_standard_labels(
    manifests_fixture: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)

    for doc in manifests:
        labels = doc["metadata"].get("labels", {})
        missing = LABEL_KEYS - set(labels)
        assert not missing, f"{doc['kind']} {doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/part-of"] == "time-manager"
        assert labels["app.kubernetes.io/instance"] == "tm"
    for deployment in deployments(manifests).values():
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert LABEL_KEYS <= set(pod_labels)


@pytest.mark.parametrize("manifests_fixture", all_manifests_cases())
def test_selectors_use_name_and_instance_only_and_pick_one_component(
    manifests_fixture: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)
    selectors: list[tuple[str, dict[str, str]]] = []

    for doc in manifests:
        spec = doc.get("spec", {})
        if doc["kind"] in {"Deployment", "PodDisruptionBudget", "ServiceMonitor"}:
            selectors.append((doc["kind"], spec["selector"]["matchLabels"]))
        elif doc["kind"] == "Service":
            selectors.append((doc["kind"], spec["selector"]))
        elif doc["kind"] == "NetworkPolicy":
            selectors.append((doc["kind"], spec["podSelector"]["matchLabels"]))

    assert selectors
    for kind, selector in selectors:
        assert set(selector) <= SELECTOR_KEYS, (kind, selector)
        assert selector["app.kubernetes.io/instance"] == "tm"
    pods = {
        component: deployment["spec"]["template"]["metadata"]["labels"]
        for component, deployment in deployments(manifests).items()
    }
    for component, deployment in deployments(manifests).items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert set(selector) == SELECTOR_KEYS
        matched = [
            other
            for other, labels in pods.items()
            if selector.items() <= labels.items()
        ]
        assert matched == [component]


# ----------------------------------------------------------- pod security


@pytest.mark.parametrize("manifests_fixture", all_manifests_cases())
def test_every_pod_meets_the_restricted_pod_security_standard(
    manifests_fixture: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)

    for component, deployment in deployments(manifests).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, component
        assert pod["securityContext"]["runAsUser"] > 0, component
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not pod.get("hostNetwork") and not pod.get("hostPID"), component
        for volume in pod["volumes"]:
            assert set(volume) & {"emptyDir", "secret", "configMap"}, volume
        for each in pod["containers"]:
            context = each["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, component
            assert context["readOnlyRootFilesystem"] is True, component
            assert context["runAsNonRoot"] is True, component
            assert context["capabilities"] == {"drop": ["ALL"]}, component
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "privileged" not in context or context["privileged"] is False
            scratch = {m["mountPath"]: m["name"] for m in each["volumeMounts"]}
            tmp = next(v for v in pod["volumes"] if v["name"] == scratch[SCRATCH])
            assert "emptyDir" in tmp, component


def test_the_worker_data_dir_is_an_empty_dir(
    default_manifests: list[Manifest],
) -> None:
    streams = deployments(default_manifests)["streams"]
    data_dir = config_of(default_manifests, "streams")["TM_STREAMS_DATA_DIR"]

    mounts = {m["mountPath"]: m["name"] for m in container(streams)["volumeMounts"]}
    volumes = {v["name"]: v for v in streams["spec"]["template"]["spec"]["volumes"]}

    assert "emptyDir" in volumes[mounts[data_dir]]
    assert volumes[mounts[data_dir]]["emptyDir"]["sizeLimit"] == "256Mi"


@pytest.mark.parametrize("manifests_fixture", all_manifests_cases())
def test_every_container_requests_cpu_and_memory_and_limits_memory(
    manifests_fixture: str, request: pytest.FixtureRequest
) -> None:
    manifests: list[Manifest] = request.getfixturevalue(manifests_fixture)

    for component, deployment in deployments(manifests).items():
        for each in deployment["spec"]["template"]["spec"]["containers"]:
            resources = each["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), component
            assert "memory" in resources["limits"], component


def test_service_account_tokens_are_mounted_only_where_the_api_is_called(
    default_manifests: list[Manifest],
) -> None:
    pods = {
        component: deployment["spec"]["template"]["spec"]
        for component, deployment in deployments(default_manifests).items()
    }
    accounts = {
        doc["metadata"]["name"]: doc
        for doc in default_manifests
        if doc["kind"] == "ServiceAccount"
    }

    assert pods["service"]["automountServiceAccountToken"] is False
    assert pods["streams"]["automountServiceAccountToken"] is True
    assert pods["operator"]["automountServiceAccountToken"] is True
    names = [pod["serviceAccountName"] for pod in pods.values()]
    assert sorted(names) == sorted(accounts)
    service_account = accounts[pods["service"]["serviceAccountName"]]
    assert service_account["automountServiceAccountToken"] is False


def test_the_operator_runs_one_replica_replaced_not_rolled(
    production_manifests: list[Manifest],
) -> None:
    operator = deployments(production_manifests)["operator"]

    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}


# ------------------------------------------------------------------ probes


def http_port(each: dict[str, Any], name: str) -> int:
    return int(next(p["containerPort"] for p in each["ports"] if p["name"] == name))


def test_the_service_is_live_on_healthz_and_ready_on_readyz_at_its_port(
    default_manifests: list[Manifest],
) -> None:
    service = container(deployments(default_manifests)["service"])
    port = int(config_of(default_manifests, "service")["TM_SERVICE_PORT"])

    assert http_port(service, "http") == port
    assert service["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert service["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert service["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_the_worker_is_probed_on_its_web_port(
    default_manifests: list[Manifest],
) -> None:
    streams = container(deployments(default_manifests)["streams"])
    config = config_of(default_manifests, "streams")

    assert http_port(streams, "http") == int(config["TM_STREAMS_WEB_PORT"]) == 6066
    assert config["TM_STREAMS_WEB_HOST"] == "0.0.0.0"
    assert streams["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}


def test_the_operator_is_probed_where_kopf_serves_liveness(
    default_manifests: list[Manifest],
) -> None:
    operator = container(deployments(default_manifests)["operator"])
    endpoint = config_of(default_manifests, "operator")["TM_OPERATOR_LIVENESS_ENDPOINT"]

    match = re.fullmatch(r"http://0\.0\.0\.0:(\d+)(/\S+)", endpoint)

    assert match is not None
    assert http_port(operator, "health") == int(match[1])
    assert operator["livenessProbe"]["httpGet"] == {
        "path": match[2],
        "port": "health",
    }


# -------------------------------------------------------------------- RBAC


def rule_file(name: str) -> dict[str, list[dict[str, Any]]]:
    loaded: dict[str, list[dict[str, Any]]] = yaml.safe_load(
        (RBAC_DIR / f"{name}.yaml").read_text()
    )
    return loaded


def test_the_operator_gets_exactly_the_rules_of_its_rule_file(
    default_manifests: list[Manifest],
) -> None:
    rules = rule_file("operator")

    cluster_role = find(default_manifests, "ClusterRole")
    role = find(default_manifests, "Role", "-operator")
    binding = find(default_manifests, "ClusterRoleBinding")

    assert cluster_role["rules"] == rules["clusterRules"]
    assert role["rules"] == rules["namespaceRules"]
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": "tm-time-manager-operator",
            "namespace": "time-manager",
        }
    ]


def test_the_worker_reads_only_the_channel_secret_by_its_configured_name(
    helm: Helm,
) -> None:
    manifests = helm.template(
        values={"operator": {"channelsSecret": "acme-channels"}},
        namespace="platform",
    )
    expected = rule_file("streams")["namespaceRules"]
    expected[0]["resourceNames"] = ["acme-channels"]

    role = find(manifests, "Role", "-streams")

    assert role["rules"] == expected
    assert config_of(manifests, "streams")["TM_CHANNELS_SECRET"] == (
        "platform/acme-channels"
    )
    assert config_of(manifests, "operator")["TM_CHANNELS_SECRET"] == "acme-channels"
    assert config_of(manifests, "operator")["TM_OPERATOR_NAMESPACE"] == "platform"


# ---------------------------------------------------------- worker bound


def test_worker_replicas_beyond_the_partitions_fail_with_the_reason(
    helm: Helm,
) -> None:
    too_many = {"kafka": {"taskEventsPartitions": 4}, "streams": {"replicas": 5}}
    enough = {"kafka": {"taskEventsPartitions": 4}, "streams": {"replicas": 4}}

    with pytest.raises(HelmFailed) as refused:
        helm.template(values=too_many)
    manifests = helm.template(values=enough)

    assert "streams.replicas (5) is more than kafka.taskEventsPartitions (4)" in (
        refused.value.stderr
    )
    assert deployments(manifests)["streams"]["spec"]["replicas"] == 4


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"kafka": {"securityProtocol": "SASL_SSL"}},
            "kafka.securityProtocol SASL_SSL needs kafka.sasl.username",
        ),
        (
            {"kafka": {"tls": {"secretName": "ca", "certKey": "tls.crt"}}},
            "kafka.tls.certKey and kafka.tls.keyKey go together",
        ),
        (
            {
                "kafka": {
                    "securityProtocol": "SASL_PLAINTEXT",
                    "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p"},
                }
            },
            "sends the password in clear",
        ),
        (
            {
                "service": {
                    "autoscaling": {"enabled": True, "minReplicas": 6, "maxReplicas": 3}
                }
            },
            "service.autoscaling.minReplicas is more than maxReplicas",
        ),
    ],
)
def test_values_that_do_not_fit_together_fail_saying_what_to_set(
    helm: Helm, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmFailed) as refused:
        helm.template(values=values)

    assert message in refused.value.stderr


# ----------------------------------------------------------------- secrets


def test_secrets_of_yours_are_referenced_and_kept_out_of_the_chart_secret(
    production_manifests: list[Manifest],
) -> None:
    secret = find(production_manifests, "Secret")
    pods = deployments(production_manifests)

    def references(component: str) -> dict[str, tuple[str, str]]:
        return {
            entry["name"]: (
                entry["valueFrom"]["secretKeyRef"]["name"],
                entry["valueFrom"]["secretKeyRef"]["key"],
            )
            for entry in container(pods[component])["env"]
            if "secretKeyRef" in entry.get("valueFrom", {})
        }

    assert secret_data(secret) == {}
    assert references("service") == {
        "TM_MONGODB_URI": ("time-manager-mongodb", "mongodbUri"),
        "TM_KAFKA_SASL_USERNAME": ("time-manager-kafka-user", "username"),
        "TM_KAFKA_SASL_PASSWORD": ("time-manager-kafka-user", "password"),
        "TM_REDIS_URL": ("time-manager-redis", "redisUrl"),
        "TM_REDIS_PASSWORD": ("time-manager-redis", "password"),
        "TM_JWT_SECRET": ("time-manager-jwt", "jwtSecret"),
    }
    assert references("streams") == {
        "TM_MONGODB_URI": ("time-manager-mongodb", "mongodbUri"),
        "TM_KAFKA_SASL_USERNAME": ("time-manager-kafka-user", "username"),
        "TM_KAFKA_SASL_PASSWORD": ("time-manager-kafka-user", "password"),
        "TM_TWILIO_AUTH_TOKEN": ("time-manager-twilio", "authToken"),
        "TM_SENDGRID_API_KEY": ("time-manager-sendgrid", "apiKey"),
    }
    assert references("operator") == {
        "TM_MONGODB_URI": ("time-manager-mongodb", "mongodbUri"),
    }


def test_a_jwt_key_is_made_when_none_is_given_and_the_given_one_used(
    helm: Helm, default_manifests: list[Manifest]
) -> None:
    given = "a-jwt-key-of-the-platform-team-0123456789"

    made = secret_data(find(default_manifests, "Secret"))["jwtSecret"]
    chosen = helm.template(values={"service": {"jwt": {"secret": given}}})

    assert len(made) == 48 and made.isalnum()
    assert secret_data(find(chosen, "Secret"))["jwtSecret"] == given


def test_tls_files_are_mounted_from_their_secrets_where_they_are_named(
    helm: Helm,
) -> None:
    values = {
        "mongodb": {"tls": {"secretName": "mongo-ca"}},
        "kafka": {
            "securityProtocol": "SSL",
            "tls": {
                "secretName": "kafka-tls",
                "certKey": "tls.crt",
                "keyKey": "tls.key",
            },
        },
        "redis": {"tls": {"secretName": "redis-ca"}},
    }

    manifests = helm.template(values=values)

    expected = {
        "service": {"mongo-ca", "kafka-tls", "redis-ca"},
        "streams": {"mongo-ca", "kafka-tls"},
        "operator": {"mongo-ca"},
    }
    for component, deployment in deployments(manifests).items():
        pod = deployment["spec"]["template"]["spec"]
        secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        assert secrets == expected[component], component
        mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
        assert all(
            m["readOnly"] for path, m in mounts.items() if path.startswith("/etc")
        )
    config = config_of(manifests, "streams")
    assert config["TM_KAFKA_SSL_CA_FILE"] == "/etc/time-manager/tls/kafka/ca.crt"
    assert config["TM_KAFKA_SSL_CERT_FILE"] == "/etc/time-manager/tls/kafka/tls.crt"
    assert config["TM_KAFKA_SSL_KEY_FILE"] == "/etc/time-manager/tls/kafka/tls.key"


def test_the_defaults_aim_only_at_services_inside_the_cluster(
    default_manifests: list[Manifest],
) -> None:
    secret = secret_data(find(default_manifests, "Secret"))
    config = config_of(default_manifests, "service")

    addresses = [secret["mongodbUri"], secret["redisUrl"], config["TM_KAFKA_BOOTSTRAP"]]

    # A bare Service name resolves in the release's namespace and nowhere else.
    hosts = [re.sub(r"^\w+://", "", a).split(":")[0] for a in addresses]
    assert hosts == ["mongodb", "redis", "kafka"]
