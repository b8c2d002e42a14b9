"""The kopf handlers: what each event of each resource sets in motion.

ReminderChannels and the Secrets they name only poke the publisher, whose
pass checks every channel and writes its status (`tm_operator.publishing`);
kopf keeps no state on a channel and never writes to a Secret it watches.
A TimeServiceTenant is reconciled by its own handlers, with a finalizer so
that deleting it applies its deletion policy first, and a timer that purges
its expired data.

Errors: a server that failed or did not answer is a `TemporaryError`, tried
again after `retry_delay_s` and backed off by kopf; nothing is permanent,
since each failure here ends once a person or a server has acted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from tm_adapters import kube as kube_connection
from tm_adapters import mongo
from tm_adapters.tenant_store import MongoTenantStore
from tm_operator.kube import CHANNELS, GROUP, TENANTS, VERSION, Kube, KubeError
from tm_operator.publishing import Publisher
from tm_operator.settings import OperatorSettings
from tm_operator.tenants import StoreUnavailable, Tenants

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the handlers share, built at start-up and closed at clean-up."""

    settings: OperatorSettings
    kube: Kube | None = None
    tenants: Tenants | None = None
    publisher: Publisher | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)

    def ready(self) -> tuple[Tenants, Publisher]:
        if self.tenants is None or self.publisher is None:
            raise kopf.TemporaryError("the operator is still starting", delay=1)
        return self.tenants, self.publisher


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf's settings: our group's names, one replica, nothing scanned."""
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=GROUP
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # One replica with the Recreate strategy: no peering objects to watch.
    settings.peering.standalone = True
    # The resources are known; watching CRDs and namespaces needs more RBAC.
    settings.scanning.disabled = True
    # Events say what a person should know; handler chatter stays in the log.
    settings.posting.level = logging.WARNING


def _temporary(exc: Exception, delay: float) -> kopf.TemporaryError:
    return kopf.TemporaryError(str(exc), delay=delay)


def register(registry: kopf.OperatorRegistry, runtime: Runtime) -> None:
    settings = runtime.settings
    delay = settings.retry_delay_s

    @kopf.on.startup(registry=registry)
    async def start(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings)
        api = await kube_connection.connect()
        kube = Kube(api)
        client = mongo.open_client(runtime.settings)
        runtime.closers += [kube.close, client.close]
        runtime.kube = kube
        runtime.tenants = Tenants(
            kube,
            MongoTenantStore(mongo.database(client, runtime.settings)),
            runtime.settings,
        )
        runtime.publisher = Publisher(kube, runtime.settings)
        runtime.tasks.append(
            asyncio.create_task(runtime.publisher.run(), name="channel-publisher")
        )
        runtime.publisher.poke()
        log.info(
            "operator started",
            extra={
                "namespace": runtime.settings.operator_namespace,
                "channels_secret": runtime.settings.channels_secret,
            },
        )

    @kopf.on.cleanup(registry=registry)
    async def stop(**_: Any) -> None:
        for task in runtime.tasks:
            task.cancel()
        await asyncio.gather(*runtime.tasks, return_exceptions=True)
        for close in runtime.closers:
            await close()
        log.info("operator stopped")

    # ---------------------------------------------------------- channels

    @kopf.index(GROUP, VERSION, CHANNELS, id="channel_secrets", registry=registry)
    def channel_secrets(
        namespace: str, name: str, spec: Mapping[str, Any], **_: Any
    ) -> dict[tuple[str, str], str]:
        """The channels naming each Secret, by (namespace, Secret name)."""
        block = spec.get(str(spec.get("provider"))) or {}
        return {
            (namespace, str(ref["name"])): name
            for ref in block.values()
            if isinstance(ref, Mapping) and "name" in ref
        }

    @kopf.on.event(GROUP, VERSION, CHANNELS, id="channel_changed", registry=registry)
    async def channel_changed(**_: Any) -> None:
        _, publisher = runtime.ready()
        publisher.poke()

    @kopf.on.event("v1", "secrets", id="secret_changed", registry=registry)
    async def secret_changed(
        namespace: str, name: str, channel_secrets: kopf.Index[Any, str], **_: Any
    ) -> None:
        if (namespace, name) in channel_secrets:
            _, publisher = runtime.ready()
            publisher.poke()

    # ---------------------------------------------------------- tenants

    @kopf.on.resume(GROUP, VERSION, TENANTS, registry=registry)
    @kopf.on.create(GROUP, VERSION, TENANTS, registry=registry)
    @kopf.on.update(GROUP, VERSION, TENANTS, field="spec", registry=registry)
    async def tenant_changed(body: kopf.Body, **_: Any) -> dict[str, str]:
        tenants, publisher = runtime.ready()
        try:
            condition = await tenants.reconcile(_plain(body))
        except (StoreUnavailable, KubeError) as exc:
            raise _temporary(exc, delay) from None
        publisher.poke()

        return {"reason": condition.reason}

    @kopf.on.delete(GROUP, VERSION, TENANTS, registry=registry)
    async def tenant_deleted(body: kopf.Body, **_: Any) -> None:
        tenants, publisher = runtime.ready()
        try:
            await tenants.remove(_plain(body))
        except (StoreUnavailable, KubeError) as exc:
            raise _temporary(exc, delay) from None
        publisher.poke()

    @kopf.on.event(GROUP, VERSION, TENANTS, id="tenant_seen", registry=registry)
    async def tenant_seen(**_: Any) -> None:
        _, publisher = runtime.ready()
        publisher.poke()

    @kopf.timer(
        GROUP,
        VERSION,
        TENANTS,
        interval=settings.retention_interval_s,
        initial_delay=min(60.0, settings.retention_interval_s),
        registry=registry,
    )
    async def tenant_retention(body: kopf.Body, **_: Any) -> None:
        tenants, _ = runtime.ready()
        try:
            await tenants.purge_expired(_plain(body))
        except StoreUnavailable as exc:
            raise _temporary(exc, delay) from None


def _plain(body: kopf.Body) -> dict[str, Any]:
    """The body as plain dicts, for code that knows nothing of kopf."""
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.metadata),
        "spec": dict(body.spec),
        "status": dict(body.status),
    }
