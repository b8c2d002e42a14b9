"""Connection settings shared by every deployable that talks to the servers.

Each deployable has one settings object of its own that extends this one, so
`TM_MONGODB_URI` means the same thing to the API and to the worker.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    streams_app_id: str = Field(
        default="tm-streams", min_length=1, max_length=100, pattern=r"^[\w.-]+$"
    )
    """The worker's Faust application id, also its Kafka consumer group, whose
    lag the service's status reports. Default: tm-streams."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL; `rediss://` for TLS, a password in the URL or in TM_REDIS_PASSWORD."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    """`auto` writes JSON unless stdout is a terminal."""
