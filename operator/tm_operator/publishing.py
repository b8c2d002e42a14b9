"""One level-triggered loop over every channel and tenant.

Whatever changed (a channel, a tenant, a Secret a channel names), the loop
looks at everything again: it checks each ReminderChannel and writes its
status when that changed, works out each tenant's route per message channel
and its `ChannelsReady` condition, and publishes the channel directory for
the reminder worker when it changed. Pokes within half a second make one
pass; a pass also runs every `publish_interval_s` to catch what no event
said. Statuses and the directory are written only when they differ, so a
pass that finds nothing new writes nothing.

One pass reads each channel's Secrets once: fine for hundreds of channels.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from tm_adapters import channel_directory
from tm_adapters.channel_directory import Route, RouteState
from tm_operator import channels, conditions
from tm_operator.channels import Verdict
from tm_operator.conditions import Condition
from tm_operator.kube import CHANNELS, TENANTS, Kube, KubeError
from tm_operator.settings import OperatorSettings

log = logging.getLogger(__name__)

CHANNEL_MANAGER = "tm-operator/channel"
TENANT_CHANNELS_MANAGER = "tm-operator/tenant-channels"
CHANNELS_READY = "ChannelsReady"
_DEBOUNCE_S = 0.5


def _same(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether a condition entry says what it said (time aside)."""
    if old is None:
        return False
    keys = ("status", "reason", "message", "observedGeneration")
    return all(old.get(k) == new.get(k) for k in keys)


def route_for(reference: str, verdict: Verdict) -> Route:
    if verdict.ready:
        state = RouteState.READY
    elif verdict.condition.reason == "Suspended":
        state = RouteState.SUSPENDED
    else:
        state = RouteState.UNAVAILABLE
    return Route(
        channel=reference,
        provider=verdict.provider,
        state=state,
        detail=f"{verdict.condition.reason}: {verdict.condition.message}",
        sender=verdict.sender,
        per_minute=verdict.per_minute,
        credentials=verdict.credentials if state is RouteState.READY else {},
    )


class Publisher:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self._poked = asyncio.Event()
        self._published: bytes | None = None

    def poke(self) -> None:
        """Ask for a pass soon."""
        self._poked.set()

    async def run(self) -> None:
        """Make passes until cancelled; a failed pass is tried again later."""
        while True:
            try:
                await asyncio.wait_for(
                    self._poked.wait(), timeout=self.settings.publish_interval_s
                )
                # Let a burst of events (a Secret and its channel) settle.
                await asyncio.sleep(_DEBOUNCE_S)
            except TimeoutError:
                pass
            self._poked.clear()

            try:
                await self.publish()
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                # Retry: the API server failed or refused; nothing is lost.
                log.warning("channel pass failed", extra={"error": str(exc)})
                await asyncio.sleep(self.settings.retry_delay_s)
                self._poked.set()
            except Exception:
                # Retry: a bug must not end the loop for every tenant.
                log.exception("channel pass failed")
                await asyncio.sleep(self.settings.retry_delay_s)
                self._poked.set()

    async def publish(self) -> None:
        """One pass: channel statuses, tenant conditions, the directory."""
        found = await self.kube.list_objects(CHANNELS)
        verdicts: dict[str, Verdict] = {}
        for body in found:
            meta = body["metadata"]
            reference = f"{meta['namespace']}/{meta['name']}"
            verdict = await channels.evaluate(
                meta["namespace"], body.get("spec") or {}, self.kube.secret_data
            )
            verdicts[reference] = verdict
            await self._channel_status(body, verdict)

        directory: dict[str, dict[str, Route]] = {}
        for body in await self.kube.list_objects(TENANTS):
            if body["metadata"].get("deletionTimestamp"):
                continue  # Going away: its reminders use the defaults meanwhile.
            spec = body.get("spec") or {}
            routes, condition = self._routes(spec, verdicts)
            directory[str(spec["tenantId"])] = routes
            await self._tenant_condition(body, condition)

        raw = channel_directory.encode(directory)
        if raw != self._published:
            await self.kube.put_secret(
                self.settings.operator_namespace,
                self.settings.channels_secret,
                {channel_directory.DATA_KEY: raw},
            )
            self._published = raw
            log.info(
                "channel directory published",
                extra={
                    "tenants": len(directory),
                    "routes": sum(len(r) for r in directory.values()),
                    "ready_channels": sum(1 for v in verdicts.values() if v.ready),
                },
            )

    def _routes(
        self, spec: Mapping[str, Any], verdicts: Mapping[str, Verdict]
    ) -> tuple[dict[str, Route], Condition]:
        """A tenant's routes: per message channel, its first ready channel."""
        routes: dict[str, Route] = {}
        missing: list[str] = []
        not_ready: list[str] = []
        for ref in spec.get("channels") or ():
            reference = f"{ref['namespace']}/{ref['name']}"
            verdict = verdicts.get(reference)
            if verdict is None:
                missing.append(reference)
                continue
            if not verdict.ready:
                not_ready.append(f"{reference} ({verdict.condition.reason})")
            kind = channels.MESSAGE_CHANNEL.get(verdict.provider)
            if kind is None:
                continue
            held = routes.get(kind)
            if held is None or (held.state is not RouteState.READY and verdict.ready):
                routes[kind] = route_for(reference, verdict)

        if missing:
            condition = Condition(
                CHANNELS_READY,
                False,
                "ChannelNotFound",
                "no such ReminderChannel: " + ", ".join(missing),
            )
        elif not_ready:
            condition = Condition(
                CHANNELS_READY,
                False,
                "ChannelNotReady",
                "not ready: " + ", ".join(not_ready),
            )
        elif routes:
            condition = Condition(
                CHANNELS_READY, True, "AllReady", "every channel named is ready"
            )
        else:
            condition = Condition(
                CHANNELS_READY,
                True,
                "NoChannels",
                "no channel named: reminders go out through the worker's own",
            )

        return routes, condition

    async def _channel_status(self, body: Mapping[str, Any], verdict: Verdict) -> None:
        status = body.get("status") or {}
        generation = int(body["metadata"].get("generation") or 0)
        new = channels.status_of(verdict, generation=generation, previous=status)
        old = conditions.find(status, conditions.READY)
        if (
            _same(old, new["conditions"][0])
            and status.get("observedGeneration") == generation
        ):
            return
        await self.kube.apply_status(body, new, manager=CHANNEL_MANAGER)
        meta = body["metadata"]
        log.info(
            "channel checked",
            extra={
                "channel": f"{meta['namespace']}/{meta['name']}",
                "ready": verdict.ready,
                "reason": verdict.condition.reason,
            },
        )

    async def _tenant_condition(
        self, body: Mapping[str, Any], condition: Condition
    ) -> None:
        status = body.get("status") or {}
        generation = int(body["metadata"].get("generation") or 0)
        entry = conditions.render(
            condition, generation=generation, previous=status.get("conditions")
        )
        if _same(conditions.find(status, CHANNELS_READY), entry):
            return
        await self.kube.apply_status(
            body, {"conditions": [entry]}, manager=TENANT_CHANNELS_MANAGER
        )
