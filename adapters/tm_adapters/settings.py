"""Connection settings shared by every deployable that talks to the servers.

Each deployable has one settings object of its own that extends this one, so
`TM_MONGODB_URI` means the same thing to the API and to the worker.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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
