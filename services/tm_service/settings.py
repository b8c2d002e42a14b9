"""Settings of tm-service, read from `TM_*` environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from tm_adapters.settings import ConnectionSettings

# Refused outside development, by the validator below.
DEVELOPMENT_JWT_SECRET = "development-only-secret-never-use-in-production"  # noqa: S105
JWT_SECRET_MIN_LENGTH = 32


class ServiceSettings(ConnectionSettings):
    jwt_secret: SecretStr = SecretStr(DEVELOPMENT_JWT_SECRET)
    """TM_JWT_SECRET: the HS256 key tokens are signed with, at least 32
    characters. The default is refused unless `environment` is development."""
    jwt_leeway_s: int = Field(default=10, ge=0, le=300)
    """Clock skew tolerated on a token's `exp`, in seconds; default 10."""

    service_host: str = "127.0.0.1"
    """Address the API listens on; default loopback only."""
    service_port: int = Field(default=5500, ge=1, le=65535)
    """Port the API listens on; default 5500."""

    outbox_relay_interval_ms: int = Field(default=10_000, ge=10, le=600_000)
    """How often the outbox relay looks through all tasks for unpublished
    events (those a stopped process left; it relays each write at once), in
    milliseconds; default 10000."""
    outbox_relay_batch: int = Field(default=200, ge=1, le=10_000)
    """Tasks whose events the relay publishes per round; default 200."""
    outbox_backoff_max_ms: int = Field(default=30_000, ge=100, le=600_000)
    """Longest pause between relay rounds while Kafka is down, in
    milliseconds; the pause starts at 500 and doubles; default 30000."""
    kafka_request_timeout_ms: int = Field(default=10_000, ge=100, le=120_000)
    """How long the relay waits for Kafka to acknowledge, in milliseconds;
    default 10000."""

    readiness_timeout_ms: int = Field(default=1000, ge=50, le=30_000)
    """How long `/readyz` waits for each of MongoDB, Redis and Kafka, in
    milliseconds; default 1000."""
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    """Largest request body accepted, in bytes; default 65536 (a task is a
    few kilobytes at most)."""
    view_max_tasks: int = Field(default=5000, ge=1, le=100_000)
    """Most tasks a daily, weekly or monthly view returns; default 5000."""

    data_retention_days: int = Field(default=30, ge=0, le=3650)
    """How long erased and deleted data is kept before a purge removes it,
    in days; default 30. The same for every tenant until tenants carry their
    own."""
    purge_interval_s: int = Field(default=3600, ge=0, le=7 * 24 * 3600)
    """How often the service purges data past its retention window, in
    seconds; 0 turns the periodic purge off; default 3600."""
    admin_list_max: int = Field(default=1000, ge=1, le=100_000)
    """Most reminders an administrator's list returns; default 1000."""
    status_overdue_grace_s: int = Field(default=30, ge=1, le=3600)
    """How late a scheduled delivery must be before the status counts it as
    overdue (the worker lagging), in seconds; default 30."""

    rate_limits_enabled: bool = True
    """Whether the rate limits below are applied; default true."""
    rate_limit_user_per_minute: int = Field(default=60, ge=1, le=1_000_000)
    """API calls a user may make per minute, unless the tenant's quotas say
    otherwise; default 60."""
    rate_limit_ip_per_minute: int = Field(default=100, ge=1, le=1_000_000)
    """API calls per minute from one client address; default 100."""
    rate_limit_ip_burst: int = Field(default=200, ge=1, le=1_000_000)
    """Calls one client address may make at once before the per-minute pace
    applies; default 200."""
    rate_limit_tasks_per_hour: int = Field(default=100, ge=1, le=1_000_000)
    """Tasks a user may create per hour, unless the tenant's quotas say
    otherwise; default 100."""
    rate_limit_tasks_per_day: int = Field(default=1000, ge=1, le=10_000_000)
    """Tasks a user may create per day, unless the tenant's quotas say
    otherwise; default 1000."""

    tenant_cache_s: int = Field(default=30, ge=0, le=3600)
    """How long a tenant's record (quotas, active, API key digest) read from
    MongoDB is kept in memory, in seconds; 0 reads it on every request;
    default 30. A deactivation takes effect within this."""
    require_tenant_registration: bool = False
    """Refuse tokens of a tenant the operator has not registered (403
    TENANT_INACTIVE); default false, for single-tenant installs. A tenant
    the operator deactivated is refused either way."""

    redis_key_prefix: str = Field(
        default="tm:", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$"
    )
    """Prefix of every Redis key the service writes; default `tm:`."""
    redis_timeout_ms: int = Field(default=250, ge=10, le=30_000)
    """How long one Redis call of a request may take, in milliseconds;
    default 250."""
    redis_retry_ms: int = Field(default=5000, ge=0, le=600_000)
    """After Redis failed, how long requests go without trying it again,
    in milliseconds; default 5000."""

    view_cache_enabled: bool = True
    """Whether daily and weekly views are cached in Redis; default true."""
    view_cache_daily_ttl_s: int = Field(default=300, ge=1, le=86_400)
    """Lifetime of a cached daily view, in seconds; default 300."""
    view_cache_weekly_ttl_s: int = Field(default=600, ge=1, le=86_400)
    """Lifetime of a cached weekly view, in seconds; default 600."""
    view_fast_path: bool = True
    """Whether a cached daily view is answered before the application's
    stack when the token, the tenant, the limits and the cache all allow it,
    in one Redis call (`tm_service.fast_views`); false sends every request
    through the stack. Default true."""

    idempotency_ttl_s: int = Field(default=86_400, ge=60, le=30 * 86_400)
    """How long the answer to a batch sent with an `Idempotency-Key` is kept
    for its retries, in seconds; default 86400 (a day)."""
    idempotency_lock_s: int = Field(default=60, ge=1, le=3600)
    """How long a batch under way holds its key before a retry may run it,
    in seconds (only matters when a process dies mid-batch); default 60."""

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins a browser may call the API from, comma-separated
    (`https://app.example.com,http://localhost:3000`); default none, which
    leaves CORS off."""

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _origins_are_urls(cls, value: list[str]) -> list[str]:
        for origin in value:
            scheme, _, rest = origin.partition("://")
            if scheme not in ("http", "https") or not rest or "/" in rest:
                raise ValueError(
                    f"{origin!r} is not an origin such as https://app.example.com"
                )
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_secret(self) -> ServiceSettings:
        secret = self.jwt_secret.get_secret_value()
        if len(secret) < JWT_SECRET_MIN_LENGTH:
            raise ValueError(
                f"TM_JWT_SECRET must be at least {JWT_SECRET_MIN_LENGTH} characters"
            )
        if self.environment != "development" and secret == DEVELOPMENT_JWT_SECRET:
            raise ValueError(
                "TM_JWT_SECRET must be set: the development default is refused "
                f"in {self.environment}"
            )

        return self
