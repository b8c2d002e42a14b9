"""The API calls the operator makes beside kopf's own watching.

kopf watches the resources and runs the handlers; these calls read the
Secrets a channel names, write statuses by server-side apply (so each writer
owns only its own conditions), and keep the Secrets the operator owns.

Errors are translated once, here:

    KubeRetry      the API server failed or was unreachable: try again later
    KubeRefused    it refused the request (RBAC, validation): try again later
                   too, since a person must act first, but say what it said
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

GROUP = "timemanager.io"
VERSION = "v1alpha1"
CHANNELS = "reminderchannels"
TENANTS = "timeservicetenants"
MANAGED_BY = {"app.kubernetes.io/managed-by": "tm-operator"}


class KubeError(Exception):
    pass


class KubeRetry(KubeError):
    pass


class KubeRefused(KubeError):
    pass


def _translate(exc: Exception, what: str) -> KubeError:
    if isinstance(exc, ApiException):
        if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
            return KubeRefused(f"{what}: HTTP {exc.status} {exc.reason}")
        return KubeRetry(f"{what}: HTTP {exc.status} {exc.reason}")
    return KubeRetry(f"{what}: {type(exc).__name__}")


_FAILURES = (ApiException, aiohttp.ClientError, TimeoutError)


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def close(self) -> None:
        await self.api.close()

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's data, decoded; None when there is no such Secret."""
        try:
            secret = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _translate(exc, f"reading Secret {namespace}/{name}") from None
        except _FAILURES as exc:
            raise _translate(exc, f"reading Secret {namespace}/{name}") from None

        return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}

    async def get_channel(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, CHANNELS, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise _translate(
                exc, f"reading ReminderChannel {namespace}/{name}"
            ) from None
        except _FAILURES as exc:
            raise _translate(
                exc, f"reading ReminderChannel {namespace}/{name}"
            ) from None

        return found

    async def list_objects(self, plural: str) -> list[dict[str, Any]]:
        try:
            found = await self.custom.list_cluster_custom_object(GROUP, VERSION, plural)
        except _FAILURES as exc:
            raise _translate(exc, f"listing {plural}") from None

        items: list[dict[str, Any]] = found.get("items") or []
        return items

    async def apply_status(
        self,
        body: Mapping[str, Any],
        status: Mapping[str, Any],
        *,
        manager: str,
    ) -> None:
        """Server-side apply of `status` on the resource `body` is, as `manager`."""
        meta = body["metadata"]
        patch = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": body["kind"],
            "metadata": {"name": meta["name"], **_namespace(meta)},
            "status": dict(status),
        }
        what = f"status of {body['kind']} {meta.get('namespace', '')}/{meta['name']}"
        try:
            if "namespace" in meta:
                await self.custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    meta["namespace"],
                    CHANNELS,
                    meta["name"],
                    patch,
                    field_manager=manager,
                    force=True,
                    _content_type="application/apply-patch+yaml",
                )
            else:
                await self.custom.patch_cluster_custom_object_status(
                    GROUP,
                    VERSION,
                    TENANTS,
                    meta["name"],
                    patch,
                    field_manager=manager,
                    force=True,
                    _content_type="application/apply-patch+yaml",
                )
        except ApiException as exc:
            if exc.status == 404:
                return  # Gone meanwhile: nothing left to report on.
            raise _translate(exc, what) from None
        except _FAILURES as exc:
            raise _translate(exc, what) from None

    async def put_secret(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, bytes],
        *,
        labels: Mapping[str, str] | None = None,
        owner: Mapping[str, Any] | None = None,
    ) -> None:
        """Create the Secret, or replace its data if it exists."""
        metadata: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": {**MANAGED_BY, **(labels or {})},
        }
        if owner is not None:
            metadata["ownerReferences"] = [dict(owner)]
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": "Opaque",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }
        what = f"writing Secret {namespace}/{name}"
        try:
            try:
                await self.core.create_namespaced_secret(namespace, body)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                await self.core.replace_namespaced_secret(name, namespace, body)
        except _FAILURES as exc:
            raise _translate(exc, what) from None

    async def delete_secret(self, namespace: str, name: str) -> None:
        try:
            await self.core.delete_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise _translate(exc, f"deleting Secret {namespace}/{name}") from None
        except _FAILURES as exc:
            raise _translate(exc, f"deleting Secret {namespace}/{name}") from None


def _namespace(meta: Mapping[str, Any]) -> dict[str, str]:
    return {"namespace": meta["namespace"]} if meta.get("namespace") else {}
