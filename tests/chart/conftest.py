"""Fixtures of the chart's tests: helm, the rendered manifests, the API server.

helm is the one `scripts/infra up --kube` installs (TM_HELM); it renders and
lints the charts in the working tree only, with its cache and configuration
in a temporary folder, so no repository is ever fetched. The tests that need
the API server take `kube` and a namespace of their own, held to the
restricted Pod Security Standard. Without helm or the API server the tests
fail and say how to start them; nothing here skips.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.charts import (
    PRODUCTION_VALUES,
    RESTRICTED,
    START_KUBE,
    Helm,
    Manifest,
)
from tests.support.kube import Kube


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    found = os.environ.get("TM_HELM")
    if not found or not Path(found).is_file():
        pytest.fail(
            f"TM_HELM does not name the helm binary: {START_KUBE}", pytrace=False
        )

    return Helm(
        Path(found),
        tmp_path_factory.mktemp("helm-home"),
        os.environ.get("KUBECONFIG"),
    )


@pytest.fixture(scope="session")
def default_manifests(helm: Helm) -> list[Manifest]:
    return helm.template()


@pytest.fixture(scope="session")
def production_manifests(helm: Helm) -> list[Manifest]:
    return helm.template(PRODUCTION_VALUES)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    config = os.environ.get("KUBECONFIG")
    if not config or not Path(config).is_file():
        pytest.fail(f"KUBECONFIG names no kubeconfig: {START_KUBE}", pytrace=False)
    client = Kube(Path(config))
    try:
        ready = client.http.get("/readyz").status_code == 200
    except OSError:
        ready = False
    if not ready:
        client.close()
        pytest.fail(f"the API server is not ready: {START_KUBE}", pytrace=False)

    yield client

    client.close()


@pytest.fixture
def restricted_namespace(kube: Kube) -> str:
    """A new namespace whose pods must meet the restricted standard.

    NB: without a controller-manager a deleted namespace stays Terminating,
    so each test takes a fresh one and leaves it.
    """
    name = f"tm-chart-{uuid.uuid4().hex[:10]}"
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": RESTRICTED},
        }
    )

    return name
