"""Daily and weekly views, cached in Redis under the design document's keys.

    tasks:user:{tenant/user}:daily:{date}        kept TM_VIEW_CACHE_DAILY_TTL_S (300 s)
    tasks:user:{tenant/user}:weekly:{weekStart}  kept TM_VIEW_CACHE_WEEKLY_TTL_S (600 s)

(after `TM_REDIS_KEY_PREFIX`). A user id is unique only within its tenant,
so the key names both; the braces make them a Redis Cluster hash tag.

What is cached is the rendered `data` of the answer, so a hit costs one
Redis read and no serialization. Every write of a task (create, update,
completion, deletion, a reminder retried, an erasure) invalidates the daily
key of the task's date and the weekly keys of the seven weeks that contain
it, for the old date and the new one when a task moves, before the write
is answered. With the stamps of `tm_domain.caching`, a view read while a
write lands is not kept, so the next read after a write always sees it.

Without Redis the views are read from the store on every request. If an
invalidation cannot reach Redis, this process stops reading the cache for
the longest lifetime of an entry, since an entry it could not drop may
still be there when Redis is back.

The worker's own writes (a reminder sent or failed) do not invalidate: a
cached view can show a reminder's delivery state up to one lifetime late,
while `GET .../tasks/{id}` always reads the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, timedelta

from tm_domain import caching, storage
from tm_service.metrics import Metrics
from tm_service.settings import ServiceSettings

log = logging.getLogger(__name__)

WEEK_DAYS = 7


def key(user: storage.User, view: str, first: str) -> str:
    return f"tasks:user:{{{user.tenant_id}/{user.user_id}}}:{view}:{first}"


def keys_of(user: storage.User, task_dates: Iterable[str]) -> list[str]:
    """Every cache key whose view can show a task dated on one of the dates."""
    found: dict[str, None] = {}
    for text in task_dates:
        day = date.fromisoformat(text)
        found[key(user, "daily", text)] = None
        for back in range(WEEK_DAYS):
            found[key(user, "weekly", (day - timedelta(days=back)).isoformat())] = None

    return list(found)


class Views:
    def __init__(
        self,
        cache: caching.ViewCache | None,
        *,
        settings: ServiceSettings,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache if settings.view_cache_enabled else None
        self.ttl_s = {
            "daily": settings.view_cache_daily_ttl_s,
            "weekly": settings.view_cache_weekly_ttl_s,
        }
        self.metrics = metrics
        self.clock = clock
        self._distrusted_until = 0.0

    def trusts_cache(self) -> bool:
        """Whether cached views may be read now (see `invalidate`)."""
        return self.cache is not None and self.clock() >= self._distrusted_until

    async def render(
        self,
        user: storage.User,
        view: str,
        first: str,
        load: Callable[[], Awaitable[bytes]],
    ) -> bytes:
        """The view's rendered data, from the cache or from `load`."""
        cache = self.cache
        if cache is None or self.clock() < self._distrusted_until:
            return await load()
        name = key(user, view, first)

        try:
            cached = await cache.read(name)
        except storage.StoreUnavailable:
            # Uncached: the store answers alone while Redis is out.
            self.metrics.redis_unavailable.labels("cache").inc()
            self.metrics.cache.labels(view, "miss").inc()
            return await load()
        if cached.body is not None:
            self.metrics.cache.labels(view, "hit").inc()
            return cached.body

        self.metrics.cache.labels(view, "miss").inc()
        body = await load()
        try:
            await cache.fill(name, body, stamp=cached.stamp, ttl_s=self.ttl_s[view])
        except storage.StoreUnavailable:
            self.metrics.redis_unavailable.labels("cache").inc()

        return body

    async def invalidate(self, user: storage.User, task_dates: Iterable[str]) -> None:
        """Drop every cached view that can show a task on these dates."""
        if self.cache is None:
            return
        names = keys_of(user, task_dates)

        try:
            await self.cache.invalidate(names)
        except storage.StoreUnavailable as exc:
            # An entry we could not drop may outlive the outage: read none
            # for as long as any entry can live.
            self.metrics.redis_unavailable.labels("cache").inc()
            self._distrusted_until = self.clock() + max(self.ttl_s.values())
            log.warning(
                "cached views not invalidated; reading the store only for a while",
                extra={"reason": str(exc), "seconds": max(self.ttl_s.values())},
            )
