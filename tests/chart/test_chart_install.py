"""The charts against the real API server of `scripts/infra up --kube`.

Every object helm renders is sent to the API server, which validates it
against its schemas and admission (PodSecurity at the restricted level
included) and answers with warnings where something would be refused later.
Then helm installs, upgrades and uninstalls the charts for real. There is
no controller-manager or kubelet: objects are stored, no pod ever runs, so
what is shown is that the cluster accepts the chart, not that it works.
"""

from __future__ import annotations

import functools
import re
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.charts import (
    CHART,
    CRD_CHART,
    PRODUCTION_VALUES,
    ROOT,
    Discovery,
    Helm,
    Manifest,
    warnings_of,
)
from tests.support.kube import GROUP, VERSION, Kube, KubeError

pytestmark = pytest.mark.integration

# Stand-ins for the Prometheus operator's CRDs, which the API server here
# lacks: they store any ServiceMonitor or PrometheusRule without checking
# its fields, so those two kinds are shown to install, not to be valid.
MONITORING_KINDS = {
    "ServiceMonitor": "servicemonitors",
    "PrometheusRule": "prometheusrules",
}


def stand_in_crd(kind: str, plural: str) -> Manifest:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {
            "group": "monitoring.coreos.com",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def monitoring_crds(kube: Kube) -> None:
    for kind, plural in MONITORING_KINDS.items():
        kube.apply(stand_in_crd(kind, plural))
    for plural in MONITORING_KINDS.values():
        name = f"{plural}.monitoring.coreos.com"
        kube.wait_for(
            functools.partial(established, kube, name),
            what=f"the stand-in CRD {name} to be established",
        )


def established(kube: Kube, name: str) -> bool:
    crd = kube.get("CustomResourceDefinition", name)
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def discovery(kube: Kube) -> Discovery:
    return Discovery(kube.http)


@pytest.fixture
def releases(helm: Helm) -> Iterator[list[tuple[str, str]]]:
    """Releases a test installed, as (name, namespace); uninstalled after it."""
    installed: list[tuple[str, str]] = []

    yield installed

    for name, namespace in reversed(installed):
        # A test that failed half-way may leave a release or none.
        helm.run("uninstall", name, "--namespace", namespace, check=False)


def dry_run(
    kube: Kube, discovery: Discovery, manifest: Manifest
) -> tuple[int, str, list[str]]:
    """Create `manifest` in dry-run mode: status, message and warnings."""
    response = kube.http.post(
        discovery.path(manifest),
        params={"dryRun": "All", "fieldManager": "chart-tests"},
        json=manifest,
    )
    message = "" if response.is_success else response.json().get("message", "")

    return response.status_code, message, warnings_of(response)


def install_crds(helm: Helm, namespace: str, releases: list[tuple[str, str]]) -> str:
    """Install the CRD chart as a release of its own; its name."""
    name = f"tm-crds-{uuid.uuid4().hex[:6]}"
    # NB: the CRDs exist already (other tests apply them, and an uninstall
    # keeps them): the release takes them over, with their current content.
    done = helm.run(
        "install",
        name,
        str(CRD_CHART),
        "--namespace",
        namespace,
        "--take-ownership",
        "--force-conflicts",
    )
    releases.append((name, namespace))
    assert "Warning" not in done.stderr, done.stderr

    return name


def crd_uids(kube: Kube) -> dict[str, str]:
    names = [f"reminderchannels.{GROUP}", f"timeservicetenants.{GROUP}"]
    return {
        name: kube.get("CustomResourceDefinition", name)["metadata"]["uid"]
        for name in names
    }


# ------------------------------------------------------------- dry runs


@pytest.mark.parametrize(
    "values_files",
    [
        pytest.param((), id="default values"),
        pytest.param((PRODUCTION_VALUES,), id="production values"),
    ],
)
def test_every_rendered_object_is_accepted_without_warnings(
    helm: Helm,
    kube: Kube,
    discovery: Discovery,
    monitoring_crds: None,
    restricted_namespace: str,
    values_files: tuple[Path, ...],
) -> None:
    manifests = helm.template(*values_files, namespace=restricted_namespace)

    outcomes = {
        f"{doc['kind']}/{doc['metadata']['name']}": dry_run(kube, discovery, doc)
        for doc in manifests
    }

    refused = {key: o for key, o in outcomes.items() if o[0] >= 300}
    warned = {key: o[2] for key, o in outcomes.items() if o[2]}
    assert not refused
    assert not warned
    assert len(outcomes) == len(manifests) >= 12


def test_the_api_server_does_refuse_a_pod_below_the_restricted_standard(
    kube: Kube, discovery: Discovery, restricted_namespace: str
) -> None:
    # The control of the tests above and below: admission is on and strict.
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "control", "namespace": restricted_namespace},
        }
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "runs-as-root", "namespace": restricted_namespace},
        "spec": {
            "serviceAccountName": "control",
            "containers": [{"name": "c", "image": "time-manager:0.1.0"}],
        },
    }

    status, message, _ = dry_run(kube, discovery, pod)

    assert status == 403
    assert 'violates PodSecurity "restricted:latest"' in message


# --------------------------------------------------------------- install


def test_helm_installs_both_charts_into_a_restricted_namespace(
    helm: Helm,
    kube: Kube,
    discovery: Discovery,
    monitoring_crds: None,
    restricted_namespace: str,
    releases: list[tuple[str, str]],
) -> None:
    namespace = restricted_namespace
    install_crds(helm, namespace, releases)

    done = helm.run(
        "install",
        "tm",
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(PRODUCTION_VALUES),
    )
    releases.append(("tm", namespace))

    assert "STATUS: deployed" in done.stdout
    assert "Warning" not in done.stderr, done.stderr
    manifest = helm.run("get", "manifest", "tm", "--namespace", namespace).stdout
    installed = [doc for doc in yaml.safe_load_all(manifest) if doc]
    missing = []
    for doc in installed:
        doc["metadata"].setdefault("namespace", namespace)
        if kube.http.get(discovery.path(doc, named=True)).status_code != 200:
            missing.append(f"{doc['kind']}/{doc['metadata']['name']}")
    assert not missing
    assert len(installed) == len(helm.template(PRODUCTION_VALUES, namespace=namespace))


def test_the_pods_of_the_installed_deployments_pass_pod_security_enforcement(
    helm: Helm,
    kube: Kube,
    discovery: Discovery,
    restricted_namespace: str,
    releases: list[tuple[str, str]],
) -> None:
    namespace = restricted_namespace
    helm.run("install", "tm", str(CHART), "--namespace", namespace)
    releases.append(("tm", namespace))

    # Enforcement applies to pods, which no controller makes here: make
    # each Deployment's pod as its ReplicaSet would, in a dry run.
    outcomes = {}
    found = kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")
    for item in found["items"]:
        template = item["spec"]["template"]
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{item['metadata']['name']}-0",
                "namespace": namespace,
                "labels": template["metadata"]["labels"],
            },
            "spec": template["spec"],
        }
        outcomes[item["metadata"]["name"]] = dry_run(kube, discovery, pod)

    assert len(outcomes) == 3
    assert {name: o for name, o in outcomes.items() if o[0] >= 300 or o[2]} == {}


def test_helm_shows_the_api_servers_warnings_where_the_tests_look(
    helm: Helm,
    restricted_namespace: str,
    releases: list[tuple[str, str]],
    tmp_path: Path,
) -> None:
    # The control of the "no Warning" assertions: a chart whose Deployment
    # the restricted standard would refuse makes helm print one.
    chart = tmp_path / "below-restricted"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: below\nversion: 0.1.0\n")
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "below"},
        "spec": {
            "selector": {"matchLabels": {"app": "below"}},
            "template": {
                "metadata": {"labels": {"app": "below"}},
                "spec": {"containers": [{"name": "c", "image": "time-manager:0.1.0"}]},
            },
        },
    }
    (chart / "templates" / "deployment.yaml").write_text(yaml.safe_dump(deployment))

    done = helm.run("install", "below", str(chart), "--namespace", restricted_namespace)
    releases.append(("below", restricted_namespace))

    assert "Warning: would violate PodSecurity" in done.stderr


# ------------------------------------------------- upgrade and uninstall


def test_upgrading_and_uninstalling_keep_the_crds_and_every_resource(
    helm: Helm,
    kube: Kube,
    restricted_namespace: str,
    releases: list[tuple[str, str]],
) -> None:
    namespace = restricted_namespace
    crds = install_crds(helm, namespace, releases)
    helm.run("install", "tm", str(CHART), "--namespace", namespace)
    before = crd_uids(kube)
    channel = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ReminderChannel",
        "metadata": {"name": "email", "namespace": namespace},
        "spec": {
            "provider": "sendgrid",
            "sendgrid": {
                "apiKeyRef": {"name": "sendgrid", "key": "apiKey"},
                "fromEmail": "reminders@example.test",
            },
        },
    }
    kube.create(channel)

    upgraded = helm.run("upgrade", crds, str(CRD_CHART), "--namespace", namespace)
    helm.run("upgrade", "tm", str(CHART), "--namespace", namespace)
    after_upgrade = crd_uids(kube)
    app_removed = helm.run("uninstall", "tm", "--namespace", namespace)
    crds_removed = helm.run("uninstall", crds, "--namespace", namespace)
    releases.clear()

    assert "STATUS: deployed" in upgraded.stdout
    assert after_upgrade == before
    assert "uninstalled" in app_removed.stdout
    assert "kept due to the resource policy" in crds_removed.stdout
    assert crd_uids(kube) == before
    assert kube.get("ReminderChannel", "email", namespace)["spec"]["provider"] == (
        "sendgrid"
    )
    with pytest.raises(KubeError) as gone:
        kube.get("ServiceAccount", "tm-time-manager-operator", namespace)
    assert gone.value.status == 404


# ---------------------------------------------------------------- README


def test_the_readme_helm_commands_install_the_platform(
    helm: Helm,
    kube: Kube,
    restricted_namespace: str,
    releases: list[tuple[str, str]],
) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploy to Kubernetes\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    commands = [
        shlex.split(line) for line in block[1].splitlines() if line.startswith("helm ")
    ]

    # As written, on a fresh cluster of one's own; here the namespace is the
    # test's and the CRDs, which exist already, are taken over.
    for command in commands:
        args = [restricted_namespace if a == "time-manager" else a for a in command]
        if "--namespace" not in args:
            args += ["--namespace", restricted_namespace]
        if "charts/time-manager-crds" in args:
            args += ["--take-ownership", "--force-conflicts"]
        done = helm.run(*args[1:], cwd=ROOT)
        releases.append((args[2], restricted_namespace))
        assert "Warning" not in done.stderr, done.stderr

    assert [command[:3] for command in commands] == [
        ["helm", "install", "tm-crds"],
        ["helm", "install", "tm"],
    ]
    service = kube.request(
        "GET",
        f"/api/v1/namespaces/{restricted_namespace}/services/tm-time-manager-service",
    )
    forward = next(line for line in block[1].splitlines() if "port-forward" in line)
    assert forward.endswith(f"5500:{service['spec']['ports'][0]['port']}")
