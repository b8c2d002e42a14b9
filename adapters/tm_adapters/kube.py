"""Connecting to the Kubernetes API, in a pod or from a kubeconfig.

In a pod the ServiceAccount's token and CA are used; elsewhere the kubeconfig
named by `KUBECONFIG` (or `~/.kube/config`), as kubectl reads it.
"""

from __future__ import annotations

import base64

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.config.config_exception import ConfigException


class KubeUnavailable(Exception):
    """No configuration to reach an API server with, or it did not answer."""


async def connect() -> client.ApiClient:
    """An API client, configured for the pod it runs in or from a kubeconfig."""
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException:
        try:
            await config.load_kube_config(client_configuration=configuration)
        except (ConfigException, OSError) as exc:
            raise KubeUnavailable(f"no Kubernetes configuration: {exc}") from None

    return client.ApiClient(configuration)


async def read_secret(
    api: client.ApiClient, namespace: str, name: str
) -> tuple[str, dict[str, bytes]] | None:
    """A Secret's resourceVersion and decoded data, or None when there is none."""
    core = client.CoreV1Api(api)
    try:
        secret = await core.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise KubeUnavailable(
            f"reading Secret {namespace}/{name}: HTTP {exc.status}"
        ) from None

    data = {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}

    return str(secret.metadata.resource_version), data
