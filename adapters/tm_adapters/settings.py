"""Connection settings shared by every deployable that talks to the servers.

Each deployable has one settings object of its own that extends these, so
`TM_MONGODB_URI` means the same thing to the API and to the worker, and
`TM_TWILIO_ACCOUNT_SID` the same to the worker and to the single-process mode.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tm_domain import scheduling
from tm_domain.delivery import EngineSettings

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class ConnectionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TM_", extra="ignore")

    environment: Literal["development", "production"] = "development"
    """`production` refuses the development defaults below that are unsafe."""

    mongodb_uri: str = "mongodb://127.0.0.1:27017/"
    """MongoDB (or a MongoDB-wire server) connection string, TLS options included."""
    mongodb_database: str = "timemanager"
    mongodb_timeout_ms: int = Field(default=5000, ge=100, le=120_000)
    """Server selection and socket timeout, in milliseconds."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Comma-separated Kafka bootstrap servers."""
    kafka_task_events_topic: str = "task-events"
    """Topic of task events, keyed by task id."""
    kafka_task_events_partitions: int = Field(default=6, ge=1, le=1000)
    """Partitions of the task events topic; the worker's replicas beyond this idle."""
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    """How every Kafka client talks to the brokers: in clear or over TLS (`SSL`),
    each with or without SASL authentication. Default: PLAINTEXT."""
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    """SASL mechanism, with a `SASL_` protocol only. Default: SCRAM-SHA-512."""
    kafka_sasl_username: str | None = None
    """SASL user name; required with a `SASL_` protocol. Default: unset."""
    kafka_sasl_password: SecretStr | None = None
    """SASL password; required with a `SASL_` protocol. Default: unset."""
    kafka_ssl_ca_file: Path | None = None
    """PEM file of the CAs the brokers' certificates are checked against, with
    `SSL` or `SASL_SSL`; unset, the system's trust store. Default: unset."""
    kafka_ssl_cert_file: Path | None = None
    """PEM client certificate, for brokers that authenticate clients by TLS;
    set together with the key file. Default: unset."""
    kafka_ssl_key_file: Path | None = None
    """PEM private key of that client certificate. Default: unset."""

    streams_app_id: str = Field(
        default="tm-streams", min_length=1, max_length=100, pattern=r"^[\w.-]+$"
    )
    """The worker's Faust application id, also its Kafka consumer group, whose
    lag the service's status reports. Default: tm-streams."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL; `rediss://` for TLS, a password in the URL or in TM_REDIS_PASSWORD."""
    redis_password: SecretStr | None = None
    """Redis password, used when the URL carries none. Default: unset."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    """`auto` writes JSON unless stdout is a terminal."""

    @model_validator(mode="after")
    def _refuse_inconsistent_kafka(self) -> ConnectionSettings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"TM_KAFKA_SECURITY_PROTOCOL {protocol} needs "
                "TM_KAFKA_SASL_USERNAME and TM_KAFKA_SASL_PASSWORD"
            )
        tls_files = (
            self.kafka_ssl_ca_file,
            self.kafka_ssl_cert_file,
            self.kafka_ssl_key_file,
        )
        if not protocol.endswith("SSL") and any(tls_files):
            raise ValueError(
                f"TM_KAFKA_SSL_* files are set but TM_KAFKA_SECURITY_PROTOCOL "
                f"is {protocol}, which does not use TLS"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError(
                "TM_KAFKA_SSL_CERT_FILE and TM_KAFKA_SSL_KEY_FILE go together"
            )
        # A plain password on an unencrypted connection can be read off the wire.
        if (
            self.environment == "production"
            and protocol == "SASL_PLAINTEXT"
            and self.kafka_sasl_mechanism == "PLAIN"
        ):
            raise ValueError(
                "SASL PLAIN over SASL_PLAINTEXT sends the Kafka password in clear; "
                "use SASL_SSL or a SCRAM mechanism in production"
            )

        return self


def _worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class DeliverySettings(ConnectionSettings):
    """What every process that sends reminders needs: providers and engine."""

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

    sweep_interval_ms: int = Field(default=15_000, ge=100, le=3_600_000)
    """How often the store is read for due deliveries the events missed and for
    abandoned sends, in milliseconds. Default: 15000."""
    schedule_horizon_s: int = Field(default=600, ge=0, le=86_400)
    """How far ahead deliveries are held in memory, in seconds; 0 holds none
    and sends only what each sweep finds due, a plain poller. Default: 600."""
    worker_id: str = Field(default_factory=_worker_id, min_length=1, max_length=200)
    """Who holds a claimed delivery's lease. Default: `<hostname>-<pid>`."""

    @model_validator(mode="after")
    def _refuse_unsafe_delivery(self) -> DeliverySettings:
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
