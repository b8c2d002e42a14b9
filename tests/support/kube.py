"""A small Kubernetes REST client for tests, what `kubectl` would do for them.

It reads a kubeconfig with a bearer token and an inline CA, as
`scripts/infra up --kube` writes it and as a ServiceAccount's is built
here, and speaks to the API server over HTTPS with httpx. Refusals come
back as `KubeError` carrying the API server's own message, so a test can
assert on what `kubectl apply` would print.
"""

from __future__ import annotations

import base64
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "charts" / "time-manager-crds" / "templates"
RBAC_DIR = ROOT / "charts" / "time-manager" / "files" / "rbac"
GROUP = "timemanager.io"
VERSION = "v1alpha1"

# The REST path of each kind the tests handle, with whether it is namespaced.
_KINDS = {
    "Namespace": ("/api/v1", "namespaces", False),
    "Secret": ("/api/v1", "secrets", True),
    "ServiceAccount": ("/api/v1", "serviceaccounts", True),
    "CustomResourceDefinition": (
        "/apis/apiextensions.k8s.io/v1",
        "customresourcedefinitions",
        False,
    ),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    "ClusterRoleBinding": (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        False,
    ),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    "ReminderChannel": (f"/apis/{GROUP}/{VERSION}", "reminderchannels", True),
    "TimeServiceTenant": (f"/apis/{GROUP}/{VERSION}", "timeservicetenants", False),
}


class KubeError(Exception):
    """The API server refused a request; `status` and `message` are its own."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(f"HTTP {status} {reason}: {message}")
        self.status = status
        self.message = message
        self.reason = reason


class Kube:
    """An API server, as the user of one kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        context_name = config["current-context"]
        context = _named(config["contexts"], context_name)["context"]
        cluster = _named(config["clusters"], context["cluster"])["cluster"]
        user = _named(config["users"], context["user"])["user"]

        ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
        tls = ssl.create_default_context(cadata=ca)
        self.server = cluster["server"]
        self.token = user["token"]
        self.ca_data = cluster["certificate-authority-data"]
        self.http = httpx.Client(
            base_url=self.server,
            verify=tls,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------- requests

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"message": response.text}
            raise KubeError(
                response.status_code,
                str(body.get("message", "")),
                str(body.get("reason", "")),
            )
        result: dict[str, Any] = response.json() if response.content else {}
        return result

    def path(
        self, kind: str, name: str | None = None, namespace: str | None = None
    ) -> str:
        prefix, plural, namespaced = _KINDS[kind]
        parts = [prefix]
        if namespaced:
            if namespace is None:
                raise ValueError(f"{kind} needs a namespace")
            parts.append(f"namespaces/{namespace}")
        parts.append(plural)
        if name is not None:
            parts.append(name)
        return "/".join(parts)

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        meta = manifest["metadata"]
        return self.request(
            "POST",
            self.path(manifest["kind"], namespace=meta.get("namespace")),
            json=manifest,
        )

    def apply(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply, as `kubectl apply --server-side` does."""
        meta = manifest["metadata"]
        return self.request(
            "PATCH",
            self.path(manifest["kind"], meta["name"], meta.get("namespace")),
            params={"fieldManager": "tests", "force": "true"},
            content=yaml.safe_dump(manifest).encode(),
            headers={"Content-Type": "application/apply-patch+yaml"},
        )

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        return self.request("GET", self.path(kind, name, namespace))

    def find(
        self, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        try:
            return self.get(kind, name, namespace)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def merge(
        self, kind: str, name: str, patch: dict[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        return self.request(
            "PATCH",
            self.path(kind, name, namespace),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        )

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        try:
            self.request("DELETE", self.path(kind, name, namespace))
        except KubeError as exc:
            if exc.status != 404:
                raise

    def list(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.request(
            "GET", self.path(kind, None, namespace)
        )["items"]
        return items

    def wait_for(
        self,
        check: Callable[[], Any],
        *,
        within: float = 30.0,
        what: str = "a condition",
        describe: Callable[[], str] | None = None,
    ) -> Any:
        """`check()` until it returns something truthy, or fail saying `what`."""
        deadline = time.monotonic() + within
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                detail = describe() if describe is not None else ""
                raise AssertionError(f"timed out waiting for {what}. {detail}")
            time.sleep(0.1)

    # ---------------------------------------------------- service accounts

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, directory: Path | None = None
    ) -> Path:
        """A kubeconfig that authenticates as the ServiceAccount, by TokenRequest."""
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            json={
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 3600},
            },
        )
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "tests",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": self.ca_data,
                    },
                }
            ],
            "users": [{"name": name, "user": {"token": answer["status"]["token"]}}],
            "contexts": [
                {
                    "name": "tests",
                    "context": {
                        "cluster": "tests",
                        "user": name,
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "tests",
        }
        folder = directory or Path(tempfile.mkdtemp(prefix="tm-kube-"))
        path = folder / f"kubeconfig-{namespace}-{name}"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path


def _named(entries: Iterable[dict[str, Any]], name: str) -> dict[str, Any]:
    for entry in entries:
        if entry["name"] == name:
            return entry
    raise ValueError(f"kubeconfig has no entry named {name!r}")


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of a file, empty ones left out."""
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def crds() -> list[dict[str, Any]]:
    return [
        doc for path in sorted(CRD_DIR.glob("*.yaml")) for doc in load_documents(path)
    ]


def condition(obj: dict[str, Any] | None, kind: str = "Ready") -> dict[str, Any]:
    """The condition of `kind` in an object's status, or an empty dict."""
    for found in ((obj or {}).get("status") or {}).get("conditions") or []:
        if found.get("type") == kind:
            return dict(found)
    return {}
