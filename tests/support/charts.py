"""helm and the charts, for the chart's tests: render, lint, install.

`Helm` runs the helm client the kube servers come with, isolated from the
user's helm configuration, on the charts of the working tree only: no
repository is ever fetched.
"""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "time-manager"
CRD_CHART = ROOT / "charts" / "time-manager-crds"
PRODUCTION_VALUES = CHART / "values-production.yaml"
DEV_VALUES = CHART / "values-dev.yaml"
START_KUBE = (
    'start them with `scripts/infra up --kube` and `eval "$(scripts/infra env --kube)"`'
)
RESTRICTED = {
    f"pod-security.kubernetes.io/{mode}": "restricted"
    for mode in ("enforce", "warn", "audit")
}

Manifest = dict[str, Any]


class HelmFailed(Exception):
    """helm exited non-zero; the message is its stderr."""

    def __init__(self, args: list[str], stderr: str) -> None:
        super().__init__(f"helm {' '.join(args)} failed: {stderr}")
        self.stderr = stderr


class Helm:
    """The helm client, isolated from the user's helm configuration."""

    def __init__(self, binary: Path, home: Path, kubeconfig: str | None) -> None:
        self.binary = binary
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        if kubeconfig:
            self.env["KUBECONFIG"] = kubeconfig

    def run(
        self,
        *args: str,
        timeout: float = 120,
        check: bool = True,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """helm with `args`; HelmFailed on a non-zero exit, if `check`."""
        done = subprocess.run(
            [str(self.binary), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise HelmFailed(list(args), done.stderr)

        return done

    def template(
        self,
        *values_files: Path,
        values: dict[str, Any] | None = None,
        release: str = "tm",
        namespace: str = "time-manager",
        chart: Path = CHART,
    ) -> list[Manifest]:
        """The objects `helm template` renders, parsed."""
        args = ["template", release, str(chart), "--namespace", namespace]
        for path in values_files:
            args += ["--values", str(path)]
        if values is not None:
            extra = Path(self.env["HOME"]) / f"values-{uuid.uuid4().hex}.yaml"
            extra.write_text(yaml.safe_dump(values))
            args += ["--values", str(extra)]
        rendered = self.run(*args).stdout

        return [doc for doc in yaml.safe_load_all(rendered) if doc]


def find(manifests: list[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    """The one object of `kind` whose name ends with `name_suffix`."""
    found = [
        doc
        for doc in manifests
        if doc["kind"] == kind and doc["metadata"]["name"].endswith(name_suffix)
    ]
    assert len(found) == 1, f"{len(found)} {kind} named *{name_suffix}"

    return found[0]


def kinds(manifests: list[Manifest]) -> list[str]:
    return sorted(doc["kind"] for doc in manifests)


def secret_data(secret: Manifest) -> dict[str, str]:
    return {
        key: base64.b64decode(value).decode()
        for key, value in (secret.get("data") or {}).items()
    }


class Discovery:
    """Where each kind lives on the API server, as its discovery says."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}

    def path(self, manifest: Manifest, *, named: bool = False) -> str:
        """The collection path of the object's kind, or the object's own path."""
        key = (manifest["apiVersion"], manifest["kind"])
        if key not in self._resources:
            self._load(manifest["apiVersion"])
        plural, namespaced = self._resources[key]
        api = manifest["apiVersion"]
        prefix = f"/api/{api}" if "/" not in api else f"/apis/{api}"
        meta = manifest["metadata"]
        parts = [prefix]
        if namespaced:
            parts.append(f"namespaces/{meta['namespace']}")
        parts.append(plural)
        if named:
            parts.append(meta["name"])

        return "/".join(parts)

    def _load(self, api_version: str) -> None:
        prefix = (
            f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        )
        answer = self.http.get(prefix)
        answer.raise_for_status()
        for resource in answer.json()["resources"]:
            if "/" not in resource["name"]:
                self._resources[(api_version, resource["kind"])] = (
                    resource["name"],
                    resource["namespaced"],
                )


def warnings_of(response: httpx.Response) -> list[str]:
    """The API server's warnings on a response: `299 - "text"` headers."""
    found = []
    for header in response.headers.get_list("warning"):
        _code, _agent, text = header.split(" ", 2)
        found.append(text.strip('"'))

    return found
