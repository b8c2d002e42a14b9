"""Who may call, and how often: tenants, their API keys, and the rate limits.

Every authenticated request passes `Guard.admit` once its caller is known:

- the caller's tenant is looked up in the registry the operator writes
  (`tenants` in MongoDB), kept in memory for `TM_TENANT_CACHE_S`. A tenant
  the operator deactivated is refused with 403 TENANT_INACTIVE; so is one
  it never registered, when `TM_REQUIRE_TENANT_REGISTRATION` is set;
- the user's calls are counted against the tenant's `apiCallsPerMinute`
  (60 a minute without a registered tenant).

Task creations are counted as well, against `tasksPerHour` and
`tasksPerDay` (100 and 1000), both at once: a creation refused by one
spends nothing of the other. And before any of that, `ClientLimit` counts
every `/api/` request of a client address: 100 a minute, bursts to 200.

The daily view's read in front of the routes (`tm_service.fast_views`)
takes the address's and the user's limits in the same Redis call as the
cached view; a request it leaves to the routes carries those verdicts in
its scope (`Guard.taken`), and `ClientLimit` and `admit` use them instead of
taking the limits again.

Over a limit the answer is 429 RATE_LIMITED with `Retry-After`, and every
answer that met a limit carries `RateLimit-Policy` and `RateLimit` (the
IETF draft's structured fields: `"user";q=60;w=60` and `"user";r=12;t=48`).

The buckets live in Redis, so replicas share them. When Redis cannot be
reached the limits fail open: the request goes on, a warning is logged (once
per outage, not per request) and `tm_redis_unavailable_total{component=
"limiter"}` counts it. A planner that refuses everyone while its cache
server restarts is worse than one that briefly cannot count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from tm_domain import limits, storage, tenants
from tm_service import errors
from tm_service.metrics import Metrics
from tm_service.settings import ServiceSettings

log = logging.getLogger(__name__)

MINUTE_S = 60
HOUR_S = 3600
DAY_S = 86_400


class TenantDirectory(Protocol):
    """Where tenants are registered (the operator's `tenants` collection)."""

    async def get(self, tenant_id: str) -> tenants.Tenant | None: ...


class Tenants:
    """Tenant records read through a short in-memory cache.

    When the directory cannot be read, a record read before is used however
    old it is; without one, `find` raises StoreUnavailable.
    """

    def __init__(
        self,
        directory: TenantDirectory | None,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.directory = directory
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, tuple[float, tenants.Tenant | None]] = {}

    async def find(self, tenant_id: str) -> tenants.Tenant | None:
        if self.directory is None:
            return None
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] > self.clock():
            return cached[1]

        try:
            found = await self.directory.get(tenant_id)
        except Exception as exc:
            # Fall back: an old record is better than none while MongoDB is out.
            if cached is not None:
                log.warning(
                    "tenant registry unavailable; using the last record read",
                    extra={"tenant": tenant_id, "reason": type(exc).__name__},
                )
                return cached[1]
            raise storage.StoreUnavailable(
                f"tenant registry: {type(exc).__name__}"
            ) from exc

        self._cache[tenant_id] = (self.clock() + self.ttl_s, found)
        if len(self._cache) > 10_000:
            self._cache.pop(next(iter(self._cache)))

        return found


class DirectoryKeys:
    """`auth.TenantKeys` over the registry: a key names its tenant, whose
    record holds the key's SHA-256; the digests are compared in constant time."""

    def __init__(self, registry: Tenants) -> None:
        self.registry = registry

    async def tenant_of(self, key: str) -> str | None:
        tenant_id = tenants.key_tenant(key)
        if tenant_id is None:
            return None
        tenant = await self.registry.find(tenant_id)
        if tenant is None or not tenants.key_matches(key, tenant.api_key_sha256):
            return None

        return tenant_id


def _who(tenant_id: str, user_id: str) -> str:
    # A hash tag: every key of one caller lands in one Redis Cluster slot.
    return f"{{{tenant_id}/{user_id}}}"


class Guard:
    """Tenants' standing and the rate limits, applied to one request at a time."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        limiter: limits.RateLimiter,
        registry: Tenants,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.registry = registry
        self.metrics = metrics
        self.defaults = tenants.Quotas(
            api_calls_per_minute=settings.rate_limit_user_per_minute,
            tasks_per_hour=settings.rate_limit_tasks_per_hour,
            tasks_per_day=settings.rate_limit_tasks_per_day,
        )
        self.ip_limit = limits.Limit(
            "ip",
            quota=settings.rate_limit_ip_per_minute,
            window_s=MINUTE_S,
            burst=max(settings.rate_limit_ip_burst, settings.rate_limit_ip_per_minute),
        )
        self._limiter_down = False
        self._user_limits: dict[int, limits.Limit] = {}

    async def quotas(self, tenant_id: str) -> tenants.Quotas:
        """The tenant's quotas; refuses a tenant that may not call."""
        try:
            tenant = await self.registry.find(tenant_id)
        except storage.StoreUnavailable:
            if self.settings.require_tenant_registration:
                raise
            # Single-tenant installs go on with the defaults while MongoDB is out.
            return self.defaults

        if tenant is None:
            if self.settings.require_tenant_registration:
                raise errors.TenantInactive("this tenant is not registered")
            return self.defaults
        if not tenant.active:
            raise errors.TenantInactive("this tenant is deactivated")

        return tenant.quotas

    async def quotas_of(self, scope: Scope, tenant_id: str) -> tenants.Quotas:
        """`quotas`, looked up once a request: what the first look-up found,
        or the refusal it raised, is kept in the scope's state for the steps
        after it (the daily view's front, then the routes)."""
        state: dict[str, Any] = scope.setdefault("state", {})
        found = state.get("tenant_quotas")
        if found is None or found[0] != tenant_id:
            try:
                found = (tenant_id, await self.quotas(tenant_id))
            except (errors.ServiceError, storage.StoreUnavailable) as exc:
                found = (tenant_id, exc)
            state["tenant_quotas"] = found
        if isinstance(found[1], Exception):
            raise found[1]

        return found[1]

    async def admit(self, scope: Scope, user: storage.User) -> None:
        """Let an authenticated caller in, or raise 403 or 429."""
        quotas = await self.quotas_of(scope, user.tenant_id)
        await self._take(scope, [self._user(user, quotas)], scope_name="user")

    def stages(
        self, scope: Scope, user: storage.User, quotas: tenants.Quotas
    ) -> list[tuple[str, limits.Bucket]]:
        """The limits a request of `user` meets, in the order they are taken
        (`ClientLimit`'s, then `admit`'s), by the name of their scope."""
        if not self.settings.rate_limits_enabled:
            return []
        met = []
        client = scope.get("client")
        if client and scope["path"].startswith("/api/"):
            met.append(("ip", self._client(str(client[0]))))
        met.append(("user", self._user(user, quotas)))

        return met

    def taken(self, scope: Scope, verdicts: dict[str, limits.Verdict]) -> None:
        """Limits taken in front of the routes, for the routes' own steps.

        When every verdict allowed and the request is answered there, this
        leaves the headers `_take` would have; otherwise `ClientLimit` and
        `admit` use these verdicts instead of taking their limits again.
        """
        if not verdicts:
            return
        self._limits_up()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["limits_taken"] = dict(verdicts)
        state["response_headers"] = errors.rate_limit_headers(
            list(verdicts.values())[-1]
        )

    def answered(self, verdicts: Sequence[limits.Verdict]) -> list[tuple[bytes, bytes]]:
        """The headers of limits taken in front of the routes, every one
        allowing, for an answer given there: as ASGI sends them."""
        if not verdicts:
            return []
        self._limits_up()
        # `errors.rate_limit_headers`, made straight into ASGI's form.
        verdict = verdicts[-1]
        binding = verdict.binding
        if binding is None:
            return []
        return [
            (b"ratelimit-policy", errors.rate_limit_policy(verdict).encode("latin-1")),
            (b"ratelimit", binding.header().encode("latin-1")),
        ]

    def _client(self, address: str) -> limits.Bucket:
        return limits.Bucket(f"ip:{address}", self.ip_limit)

    def _user(self, user: storage.User, quotas: tenants.Quotas) -> limits.Bucket:
        calls = self._user_limits.get(quotas.api_calls_per_minute)
        if calls is None:
            calls = limits.Limit("user", quotas.api_calls_per_minute, MINUTE_S)
            # Tenants' quotas take few values; a limit is made once for each.
            if len(self._user_limits) < 1000:
                self._user_limits[quotas.api_calls_per_minute] = calls
        return limits.Bucket(f"user:{_who(user.tenant_id, user.user_id)}", calls)

    async def take_tasks(self, scope: Scope, user: storage.User, count: int) -> None:
        """Count `count` task creations, or raise 429 without counting any."""
        if count < 1:
            return
        quotas = await self.quotas_of(scope, user.tenant_id)
        who = _who(user.tenant_id, user.user_id)
        buckets = [
            limits.Bucket(
                f"tasks-hour:{who}",
                limits.Limit("tasks-hour", quotas.tasks_per_hour, HOUR_S),
            ),
            limits.Bucket(
                f"tasks-day:{who}",
                limits.Limit("tasks-day", quotas.tasks_per_day, DAY_S),
            ),
        ]
        await self._take(scope, buckets, scope_name="tasks", cost=count)

    async def client(self, scope: Scope, address: str) -> None:
        """Count a request from a client address, or raise 429."""
        await self._take(scope, [self._client(address)], scope_name="ip")

    async def _take(
        self,
        scope: Scope,
        buckets: Sequence[limits.Bucket],
        *,
        scope_name: str,
        cost: int = 1,
    ) -> None:
        if not self.settings.rate_limits_enabled:
            return
        state: dict[str, Any] = scope.setdefault("state", {})
        taken: dict[str, limits.Verdict] = state.get("limits_taken") or {}
        if scope_name in taken:
            # Taken in front of the routes, with the cached view's read.
            verdict = taken.pop(scope_name)
        else:
            try:
                verdict = await self.limiter.acquire(buckets, cost=cost)
            except storage.StoreUnavailable as exc:
                # Fail open: count the outage, say so once, and let the call in.
                self.metrics.redis_unavailable.labels("limiter").inc()
                if not self._limiter_down:
                    self._limiter_down = True
                    log.warning("rate limits not applied", extra={"reason": str(exc)})
                return
            self._limits_up()

        # The headers of the latest limit met, for the response.
        state["response_headers"] = errors.rate_limit_headers(verdict)
        if not verdict.allowed:
            self.metrics.rejections.labels(scope_name).inc()
            state["rate_limited"] = scope_name
            raise errors.RateLimited(verdict, scope=scope_name)

    def _limits_up(self) -> None:
        if self._limiter_down:
            self._limiter_down = False
            log.warning("rate limits applied again")


class ClientLimit:
    """The per-address limit, before anything else runs: `/api/` paths only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard: Guard | None = None
        if scope["type"] == "http" and scope["path"].startswith("/api/"):
            guard = getattr(scope["app"].state, "guard", None)
        client = scope.get("client")
        if guard is None or not client:
            await self.app(scope, receive, send)
            return

        try:
            await guard.client(scope, str(client[0]))
        except errors.RateLimited as exc:
            refused = errors.too_many(scope, exc.verdict)
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)
