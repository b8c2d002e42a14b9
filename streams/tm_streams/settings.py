"""The reminder worker's settings, read once from `TM_` environment variables."""

from __future__ import annotations

import os
import socket
import tempfile
from datetime import timedelta
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from tm_adapters.settings import ConnectionSettings
from tm_domain import scheduling
from tm_domain.delivery import EngineSettings


def _worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _data_dir() -> Path:
    return Path(tempfile.gettempdir()) / "tm-streams"


class StreamsSettings(ConnectionSettings):
    twilio_account_sid: str | None = None
    """Twilio account SID (`AC...`); SMS is off unless it, the token and the
    sender number are all set. Default: unset."""
    twilio_auth_token: SecretStr | None = None
    """Twilio auth token, the password of the account SID. Default: unset."""
    twilio_from_number: str | None = None
    """The E.164 number SMS reminders come from. Default: unset."""
    twilio_api_base: str = "https://api.twilio.com"
    """Base URL of Twilio's REST API, scheme and host (and port) only.
    Default: https://api.twilio.com; tests point it at a local fake."""

    sendgrid_api_key: SecretStr | None = None
    """SendGrid API key; e-mail is off unless it and the sender address are
    set. Default: unset."""
    sendgrid_from_email: str | None = None
    """The address e-mail reminders come from. Default: unset."""
    sendgrid_api_host: str = "https://api.sendgrid.com"
    """Base URL of SendGrid's v3 API. Default: https://api.sendgrid.com; tests
    point it at a local fake."""

    delivery_max_attempts: int = Field(default=5, ge=1, le=50)
    """Provider attempts per delivery before a transient failure is final.
    Default: 5."""
    delivery_backoff_base_ms: int = Field(default=1000, ge=1, le=3_600_000)
    """Ceiling of the wait before the first retry, in milliseconds; it doubles
    with each attempt and the wait is drawn between half and all of it.
    Default: 1000."""
    delivery_backoff_cap_ms: int = Field(default=300_000, ge=1, le=86_400_000)
    """Largest wait between two attempts, in milliseconds. Default: 300000
    (5 minutes)."""
    delivery_max_lateness_min: int = Field(default=360, ge=1, le=10_080)
    """How late past its time a reminder may still go out, in minutes; later
    than that it is marked failed as missed. Default: 360 (6 hours)."""
    delivery_send_timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    """How long one provider call may take, in milliseconds, before it counts
    as a transient failure. Default: 10000."""
    delivery_concurrency: int = Field(default=64, ge=1, le=1024)
    """Provider calls under way at once; each provider has this many threads.
    Default: 64."""

    channels_secret: str | None = Field(
        default=None, pattern=r"^[a-z0-9][-a-z0-9]*/[a-z0-9][-a-z0-9.]*$"
    )
    """`namespace/name` of the Secret the operator publishes the tenants'
    channels in; unset, every tenant uses the senders configured above.
    Default: unset."""
    channels_refresh_ms: int = Field(default=5000, ge=100, le=600_000)
    """How often that Secret is read, in milliseconds; a change to a channel
    takes effect within this. Default: 5000."""
    channel_hold_ms: int = Field(default=30_000, ge=100, le=3_600_000)
    """How often a reminder held by a suspended or unready channel is looked
    at again, in milliseconds. Default: 30000."""

    sweep_interval_ms: int = Field(default=15_000, ge=100, le=3_600_000)
    """How often MongoDB is read for due deliveries the events missed and for
    abandoned sends, in milliseconds. Default: 15000."""
    schedule_horizon_s: int = Field(default=600, ge=0, le=86_400)
    """How far ahead deliveries are held in memory, in seconds; 0 holds none
    and sends only what each sweep finds due, a plain poller. Default: 600."""
    worker_id: str = Field(default_factory=_worker_id, min_length=1, max_length=200)
    """Who holds a claimed delivery's lease. Default: `<hostname>-<pid>`."""

    streams_app_id: str = Field(
        default="tm-streams", min_length=1, max_length=100, pattern=r"^[\w.-]+$"
    )
    """Faust application id, also the Kafka consumer group. Default: tm-streams."""
    streams_data_dir: Path = Field(default_factory=_data_dir)
    """Faust's data directory. Default: `tm-streams` in the system temp folder."""
    streams_web_host: str = "127.0.0.1"
    """Address Faust's web server binds and advertises. Default: 127.0.0.1."""
    streams_web_port: int = Field(default=6066, ge=1024, le=65_535)
    """Port of Faust's web server: `/healthz`, `/metrics`. Default: 6066."""
    lag_interval_s: float = Field(default=10.0, ge=0.5, le=3600)
    """How often the consumer lag gauge is read, in seconds. Default: 10."""

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> StreamsSettings:
        if self.delivery_backoff_cap_ms < self.delivery_backoff_base_ms:
            raise ValueError("TM_DELIVERY_BACKOFF_CAP_MS is below the base")
        if self.environment == "production":
            for name in ("twilio_api_base", "sendgrid_api_host"):
                if not getattr(self, name).startswith("https://"):
                    raise ValueError(f"TM_{name.upper()} must be https in production")

        return self

    def engine(self) -> EngineSettings:
        """The delivery engine's settings."""
        send_timeout = timedelta(milliseconds=self.delivery_send_timeout_ms)
        return EngineSettings(
            retry=scheduling.RetryPolicy(
                max_attempts=self.delivery_max_attempts,
                base=timedelta(milliseconds=self.delivery_backoff_base_ms),
                cap=timedelta(milliseconds=self.delivery_backoff_cap_ms),
            ),
            lateness=scheduling.LatenessPolicy(
                max_lateness=timedelta(minutes=self.delivery_max_lateness_min)
            ),
            # A lease outlives any provider call several times over, so only a
            # worker that died inside one leaves a delivery to expire.
            lease=max(timedelta(seconds=60), send_timeout * 4),
            # NB: the SDK's own request timeout is the send timeout; the engine
            # waits a little longer, so the call ends on its thread first.
            send_timeout=send_timeout + timedelta(seconds=1),
            horizon=timedelta(seconds=self.schedule_horizon_s),
            sweep_every=timedelta(milliseconds=self.sweep_interval_ms),
            concurrency=self.delivery_concurrency,
        )
