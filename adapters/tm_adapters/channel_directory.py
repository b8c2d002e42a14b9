"""The channel directory: which channel each tenant's reminders go out through.

The operator validates every ReminderChannel and publishes, in one Secret of
its own namespace, a JSON document that maps each tenant to a route per
message channel (`sms`, `email`): the ReminderChannel that serves it, its
state, its sender address and rate limit, and, for a ready channel only, the
credentials it read from the channel's Secrets. The reminder worker reads
that one Secret and needs no access to any other, nor to the resources.

    {"tenants": {"acme": {"sms": {"channel": "team-a/sms", "provider": "twilio",
                                  "state": "ready", "detail": "",
                                  "from": "+14155550100", "perMinute": 60,
                                  "credentials": {"accountSid": "...", ...}}}}}

The document lives in a Secret because it holds credentials; it never goes to
MongoDB, a status, an event or a log line, and no `repr` here shows them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

DATA_KEY = "channels.json"


class RouteState(StrEnum):
    READY = "ready"
    SUSPENDED = "suspended"
    UNAVAILABLE = "unavailable"
    """Named by the tenant but not usable: missing, or its Secrets are wrong."""


@dataclass(frozen=True)
class Route:
    """How one tenant's messages of one channel go out."""

    channel: str
    """The ReminderChannel, as `namespace/name`."""
    provider: str
    state: RouteState
    detail: str = ""
    """Why a route that is not ready is not, for logs and delivery errors."""
    sender: str = ""
    """The from number or address."""
    per_minute: int = 60
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)

    def fingerprint(self) -> tuple[Any, ...]:
        """What a sender is built from: a change means a new sender."""
        return (self.provider, self.sender, tuple(sorted(self.credentials.items())))


Directory = Mapping[str, Mapping[str, Route]]
"""Routes by tenant id, then by message channel."""


def encode(directory: Directory) -> bytes:
    document = {
        "tenants": {
            tenant: {
                channel: {
                    "channel": route.channel,
                    "provider": route.provider,
                    "state": str(route.state),
                    "detail": route.detail,
                    "from": route.sender,
                    "perMinute": route.per_minute,
                    "credentials": dict(route.credentials),
                }
                for channel, route in sorted(routes.items())
            }
            for tenant, routes in sorted(directory.items())
        }
    }

    return json.dumps(document, sort_keys=True).encode()


def decode(raw: bytes) -> dict[str, dict[str, Route]]:
    """The directory in a published document; ValueError when it is not one."""
    try:
        tenants = json.loads(raw)["tenants"]
        return {
            str(tenant): {
                str(channel): Route(
                    channel=str(route["channel"]),
                    provider=str(route["provider"]),
                    state=RouteState(route["state"]),
                    detail=str(route.get("detail") or ""),
                    sender=str(route.get("from") or ""),
                    per_minute=int(route.get("perMinute") or 60),
                    credentials={
                        str(k): str(v)
                        for k, v in (route.get("credentials") or {}).items()
                    },
                )
                for channel, route in routes.items()
            }
            for tenant, routes in tenants.items()
        }
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a channel directory: {type(exc).__name__}") from None
