"""The operator's settings, read once from `TM_` environment variables.

How to reach the API server is not among them: kopf reads it from the pod's
ServiceAccount, or from `KUBECONFIG` elsewhere, as kubectl does.
"""

from __future__ import annotations

from pydantic import Field

from tm_adapters.settings import ConnectionSettings

_DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
_DNS_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


class OperatorSettings(ConnectionSettings):
    operator_namespace: str = Field(default="time-manager", pattern=_DNS_LABEL)
    """The namespace the operator runs in and writes its Secrets to: the
    tenants' API keys and the channel directory. Default: time-manager."""
    channels_secret: str = Field(default="tm-reminder-channels", pattern=_DNS_NAME)
    """Name of the Secret the channel directory is published in, for the
    reminder worker. Default: tm-reminder-channels."""
    publish_interval_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    """Seconds between two publications of the channel directory when
    nothing changed; a change publishes within a second. Default: 60."""
    retention_interval_s: float = Field(default=3600.0, ge=1.0, le=86_400.0)
    """Seconds between two purges of a tenant's expired data. Default: 3600."""
    operator_liveness_endpoint: str | None = Field(
        default=None, pattern=r"^http://[^/\s]+:[0-9]{1,5}/[-\w./]*$"
    )
    """URL kopf serves its liveness probe at, such as
    `http://0.0.0.0:8080/healthz`; unset, none is served. Default: unset."""
    retry_delay_s: float = Field(default=10.0, ge=0.1, le=600.0)
    """Seconds before a handler that met an unavailable server runs again;
    kopf backs off from there. Default: 10."""
