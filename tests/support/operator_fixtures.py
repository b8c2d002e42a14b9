"""Fixtures of the operator's tests: the API server, the CRDs, the operator.

The operator runs as in production: its console script, as a process, with a
ServiceAccount token bound to exactly the rules of
`charts/time-manager/files/rbac/operator.yaml`, never the admin's. One
operator serves the whole test session, since it watches the whole cluster.
Without `KUBECONFIG` the tests fail and say how to start the kube servers;
nothing here skips.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pymongo import MongoClient

from tests.support.kube import RBAC_DIR, Kube, KubeError, crds
from tm_adapters.settings import ConnectionSettings

OPERATOR = Path(sys.executable).with_name("tm-operator")
START_KUBE = (
    'start them with `scripts/infra up --kube` and `eval "$(scripts/infra env --kube)"`'
)


def rules(name: str) -> dict[str, list[dict[str, Any]]]:
    loaded: dict[str, list[dict[str, Any]]] = yaml.safe_load(
        (RBAC_DIR / f"{name}.yaml").read_text()
    )
    return loaded


def bind_service_account(kube: Kube, namespace: str, account: str, rbac: str) -> Path:
    """A ServiceAccount bound to the chart's rules `rbac`; its kubeconfig."""
    found = rules(rbac)
    role = f"{account}-{namespace}"
    subject = [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]
    kube.apply(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": namespace},
        }
    )
    if found["clusterRules"]:
        kube.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": role},
                "rules": found["clusterRules"],
            }
        )
        kube.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": role},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": subject,
            }
        )
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": account, "namespace": namespace},
            "rules": found["namespaceRules"],
        }
    )
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account, "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": account,
            },
            "subjects": subject,
        }
    )
    return kube.service_account_kubeconfig(namespace, account)


def unbind(kube: Kube, namespace: str, account: str) -> None:
    role = f"{account}-{namespace}"
    kube.delete("ClusterRoleBinding", role)
    kube.delete("ClusterRole", role)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The admin's client, with the CRDs applied and established."""
    config = os.environ.get("KUBECONFIG")
    if not config or not Path(config).is_file():
        pytest.fail(f"KUBECONFIG is not set to a file; {START_KUBE}", pytrace=False)
    client = Kube(Path(config))
    try:
        for crd in crds():
            client.apply(crd)
    except (KubeError, OSError) as exc:
        pytest.fail(f"the API server refused or did not answer: {exc}; {START_KUBE}")

    def established() -> bool:
        for crd in crds():
            found = client.get("CustomResourceDefinition", crd["metadata"]["name"])
            states = {
                c["type"]: c["status"]
                for c in found.get("status", {}).get("conditions", [])
            }
            if states.get("Established") != "True":
                return False
        return True

    client.wait_for(established, within=30, what="the CRDs to be established")
    try:
        yield client
    finally:
        client.close()


def new_namespace(kube: Kube, prefix: str) -> str:
    """A namespace of the test's own; it stays, Terminating, if deleted here."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


class OperatorProcess:
    """`tm-operator` as a process, restartable, with its JSON log."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.log_path = log_dir / "tm-operator-0.log"

    def start(self) -> None:
        self.runs += 1
        self.log_path = self.log_dir / f"tm-operator-{self.runs}.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [str(OPERATOR)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 60
        while "channel directory published" not in self.output():
            if self.process.poll() is not None:
                pytest.fail(f"tm-operator exited early:\n{self.tail()}", pytrace=False)
            if time.monotonic() > deadline:
                pytest.fail(f"tm-operator did not start:\n{self.tail()}", pytrace=False)
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"tm-operator ignored SIGTERM:\n{self.tail()}", pytrace=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def output(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")
            for path in sorted(self.log_dir.glob("tm-operator-*.log"))
        )

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])


class OperatorHome:
    """Where the operator lives: its namespace, its database, the process."""

    def __init__(
        self, namespace: str, database: str, mongodb_uri: str, process: OperatorProcess
    ) -> None:
        self.namespace = namespace
        self.database = database
        self.mongo: MongoClient[dict[str, Any]] = MongoClient(
            mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=5000
        )
        self.db = self.mongo[database]
        self.process = process


@pytest.fixture(scope="session")
def operator(
    kube: Kube, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorHome]:
    """The operator, running under the chart's RBAC in a namespace of its own."""
    servers = ConnectionSettings()
    namespace = new_namespace(kube, "tm-operator")
    config = bind_service_account(kube, namespace, "tm-operator", "operator")
    database = f"tm_operator_test_{uuid.uuid4().hex[:8]}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TM_")},
        "KUBECONFIG": str(config),
        "TM_OPERATOR_NAMESPACE": namespace,
        "TM_MONGODB_URI": servers.mongodb_uri,
        "TM_MONGODB_DATABASE": database,
        "TM_PUBLISH_INTERVAL_S": "5",
        "TM_RETENTION_INTERVAL_S": "2",
        "TM_RETRY_DELAY_S": "1",
        "TM_LOG_FORMAT": "json",
        "TM_LOG_LEVEL": "INFO",
    }
    process = OperatorProcess(env, tmp_path_factory.mktemp("operator"))
    process.start()
    home = OperatorHome(namespace, database, servers.mongodb_uri, process)
    try:
        yield home
    finally:
        process.stop()
        home.mongo.drop_database(database)
        home.mongo.close()
        unbind(kube, namespace, "tm-operator")
