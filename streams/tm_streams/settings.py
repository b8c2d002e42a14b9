"""The reminder worker's settings, read once from `TM_` environment variables.

The providers' and the delivery engine's settings are shared with the
single-process mode (`tm_adapters.settings.DeliverySettings`); those below are
the worker's own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import Field

from tm_adapters.settings import DeliverySettings


def _data_dir() -> Path:
    return Path(tempfile.gettempdir()) / "tm-streams"


class StreamsSettings(DeliverySettings):
    channels_secret: str | None = Field(
        default=None, pattern=r"^[a-z0-9][-a-z0-9]*/[a-z0-9][-a-z0-9.]*$"
    )
    """`namespace/name` of the Secret the operator publishes the tenants'
    channels in; unset, every tenant uses the `TM_TWILIO_*` and
    `TM_SENDGRID_*` senders.
    Default: unset."""
    channels_refresh_ms: int = Field(default=5000, ge=100, le=600_000)
    """How often that Secret is read, in milliseconds; a change to a channel
    takes effect within this. Default: 5000."""
    channel_hold_ms: int = Field(default=30_000, ge=100, le=3_600_000)
    """How often a reminder held by a suspended or unready channel is looked
    at again, in milliseconds. Default: 30000."""

    streams_data_dir: Path = Field(default_factory=_data_dir)
    """Faust's data directory. Default: `tm-streams` in the system temp folder."""
    streams_web_host: str = "127.0.0.1"
    """Address Faust's web server binds and advertises. Default: 127.0.0.1."""
    streams_web_port: int = Field(default=6066, ge=1024, le=65_535)
    """Port of Faust's web server: `/healthz`, `/metrics`. Default: 6066."""
    lag_interval_s: float = Field(default=10.0, ge=0.5, le=3600)
    """How often the consumer lag gauge is read, in seconds. Default: 10."""
