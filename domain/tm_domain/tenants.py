"""Tenants: who may use the time service, with what quotas, and their API keys.

A tenant is registered by the operator from a TimeServiceTenant resource and
read by the time service. Its API key is shown once, in a Secret the operator
owns; the store keeps only the key's SHA-256 digest. A key is 256 random bits,
so a fast digest is as safe as a slow one: there is nothing to guess.

A key names its tenant (`tmk_<tenant>_<random>`), so the service finds the
tenant's record by id and compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime

KEY_PREFIX = "tmk"
_TENANT_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_KEY = re.compile(r"^tmk_(?P<tenant>[a-z0-9-]{1,63})_(?P<secret>[A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class Quotas:
    """Per-user limits of a tenant, as the design document sets them."""

    api_calls_per_minute: int = 60
    tasks_per_hour: int = 100
    tasks_per_day: int = 1000


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    display_name: str
    quotas: Quotas = field(default_factory=Quotas)
    data_retention_days: int = 30
    active: bool = True
    api_key_sha256: str | None = None
    deactivated_at: datetime | None = None


def is_tenant_id(value: str) -> bool:
    """A DNS label: what a TimeServiceTenant's schema allows."""
    return bool(_TENANT_ID.match(value))


def new_api_key(tenant_id: str) -> str:
    """A fresh API key for the tenant; shown once, stored only as a digest."""
    if not is_tenant_id(tenant_id):
        raise ValueError(f"not a tenant id: {tenant_id!r}")

    return f"{KEY_PREFIX}_{tenant_id}_{secrets.token_urlsafe(32)}"


def key_tenant(key: str) -> str | None:
    """The tenant an API key names, or None when it is not one of ours."""
    found = _KEY.match(key)

    return None if found is None else found["tenant"]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, stored_digest: str | None) -> bool:
    """Whether `key` is the one whose digest is stored, in constant time."""
    if not stored_digest:
        return False

    return hmac.compare_digest(digest(key), stored_digest)
