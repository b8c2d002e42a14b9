"""Sending each reminder through its tenant's channel, or the worker's own.

The operator publishes the channel directory (`tm_adapters.channel_directory`)
in a Secret; `ChannelBook` reads it every few seconds and `ChannelRouter`
follows it from the next message on, without a restart:

- a tenant with a ready channel for the message's channel sends through it,
  from its number or address, at most `perMinute` messages a minute in this
  worker; over that, the message waits for the next free slot;
- a tenant whose channel is suspended, or named but not ready, has its
  messages held and looked at again every `channel_hold_s`; a message held
  past the lateness limit is marked missed, as any late reminder is;
- any other tenant uses the worker's own senders from its settings.

Holding is a `DeferredDelivery`: no provider call, no attempt spent.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

from tm_adapters import channel_directory, kube, providers
from tm_adapters.channel_directory import Directory, Route, RouteState
from tm_domain.delivery import Message, Sender
from tm_domain.errors import DeferredDelivery, PermanentDelivery
from tm_domain.reminders import Channel
from tm_streams.settings import StreamsSettings

log = logging.getLogger(__name__)

SenderFactory = Callable[[Route], Sender]


class RateWindow:
    """At most `limit` sends in any sliding minute."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._sent: collections.deque[float] = collections.deque()
        self._clock = clock

    def take(self, limit: int) -> float:
        """Record a send and return 0, or return the seconds until one is free."""
        now = self._clock()
        while self._sent and self._sent[0] <= now - 60:
            self._sent.popleft()
        if len(self._sent) >= limit:
            return self._sent[len(self._sent) - limit] + 60 - now
        self._sent.append(now)

        return 0.0


class ChannelRouter:
    """The senders the engine sees: one per message channel, routing by tenant."""

    def __init__(
        self,
        defaults: Mapping[str, Sender],
        *,
        build: SenderFactory,
        hold: timedelta,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.defaults = dict(defaults)
        self._build = build
        self._hold = hold
        self._clock = clock
        self._directory: Directory = {}
        self._senders: dict[str, tuple[tuple[object, ...], Sender]] = {}
        self._windows: dict[str, RateWindow] = {}

    def senders(self) -> dict[str, Sender]:
        """What to give the engine: every channel, since any tenant may have one."""
        return {str(c): _Routed(self, str(c)) for c in Channel}

    def update(self, directory: Directory) -> None:
        """Follow a newly published directory; senders of changed routes are rebuilt."""
        wanted: dict[str, Route] = {
            route.channel: route
            for routes in directory.values()
            for route in routes.values()
            if route.state is RouteState.READY
        }
        for reference in list(self._senders):
            fingerprint, sender = self._senders[reference]
            route = wanted.get(reference)
            if route is None or route.fingerprint() != fingerprint:
                del self._senders[reference]
                providers.close_senders({reference: sender})
        for reference, route in wanted.items():
            if reference not in self._senders:
                self._senders[reference] = (route.fingerprint(), self._build(route))
        self._directory = directory

    def route(self, tenant_id: str, channel: str) -> Route | None:
        """The route a tenant's messages of `channel` take now; None: the defaults."""
        return self._directory.get(tenant_id, {}).get(channel)

    def close(self) -> None:
        providers.close_senders(
            {ref: sender for ref, (_, sender) in self._senders.items()}
        )
        providers.close_senders(self.defaults)
        self._senders.clear()

    async def send(self, message: Message) -> str:
        route = self.route(message.tenant_id, message.channel)
        if route is None:
            default = self.defaults.get(message.channel)
            if default is None:
                # Give up: as the engine does when no sender exists at all.
                raise PermanentDelivery(f"no provider configured for {message.channel}")
            return await default.send(message)

        if route.state is RouteState.SUSPENDED:
            raise DeferredDelivery(
                f"channel {route.channel} is suspended", retry_after=self._hold
            )
        entry = self._senders.get(route.channel)
        if route.state is not RouteState.READY or entry is None:
            raise DeferredDelivery(
                f"channel {route.channel} is not ready: {route.detail}"[:300],
                retry_after=self._hold,
            )
        window = self._windows.setdefault(route.channel, RateWindow(self._clock))
        wait = window.take(route.per_minute)
        if wait > 0:
            raise DeferredDelivery(
                f"channel {route.channel} is at its limit of "
                f"{route.per_minute} a minute",
                retry_after=timedelta(seconds=wait),
            )

        return await entry[1].send(message)


class _Routed:
    """The router, seen by the engine as the sender of one message channel."""

    def __init__(self, router: ChannelRouter, channel: str) -> None:
        self.router = router
        self.channel = channel

    async def send(self, message: Message) -> str:
        return await self.router.send(message)


def sender_factory(settings: StreamsSettings) -> SenderFactory:
    """Build a channel's sender with the worker's API hosts and timeouts."""
    timeout = settings.delivery_send_timeout_ms / 1000

    def build(route: Route) -> Sender:
        credentials = route.credentials
        if route.provider == "twilio":
            return providers.TwilioSender(
                account_sid=credentials["accountSid"],
                auth_token=credentials["authToken"],
                from_number=route.sender,
                api_base=settings.twilio_api_base,
                timeout=timeout,
                concurrency=settings.delivery_concurrency,
            )
        return providers.SendGridSender(
            api_key=credentials["apiKey"],
            from_email=route.sender,
            api_host=settings.sendgrid_api_host,
            timeout=timeout,
            concurrency=settings.delivery_concurrency,
        )

    return build


class ChannelBook:
    """Reads the published directory into the router, every `refresh`."""

    def __init__(
        self,
        router: ChannelRouter,
        *,
        namespace: str,
        name: str,
        refresh: timedelta,
    ) -> None:
        self.router = router
        self.namespace = namespace
        self.name = name
        self.refresh = refresh
        self._version: str | None = None
        self._failing = False

    async def run(self) -> None:
        """Refresh until cancelled; a failed read keeps the routes last read."""
        while True:
            try:
                api = await kube.connect()
                break
            except kube.KubeUnavailable as exc:
                # Wait: tenants use the worker's own senders meanwhile.
                log.warning("channel directory unreachable", extra={"error": str(exc)})
                await asyncio.sleep(self.refresh.total_seconds())
        try:
            while True:
                await self.refresh_once(api)
                await asyncio.sleep(self.refresh.total_seconds())
        finally:
            await api.close()

    async def refresh_once(self, api: kube.client.ApiClient) -> None:
        try:
            found = await kube.read_secret(api, self.namespace, self.name)
            if found is None:
                version, directory = "absent", {}
            else:
                version, data = found
                directory = channel_directory.decode(
                    data.get(channel_directory.DATA_KEY, b"")
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Keep going on the routes last read: the API server may be back soon.
            if not self._failing:
                log.warning(
                    "channel directory unreadable",
                    extra={"error": f"{type(exc).__name__}: {exc}"[:300]},
                )
            self._failing = True
            return
        self._failing = False

        if version != self._version:
            self.router.update(directory)
            self._version = version
            log.info(
                "channel directory loaded",
                extra={
                    "tenants": len(directory),
                    "routes": sum(len(routes) for routes in directory.values()),
                },
            )
