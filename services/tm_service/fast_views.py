"""The cached daily view, answered in front of the routes when nothing needs them.

`GET /api/v1/visitor/time/tasks/daily?date=YYYY-MM-DD` is the hottest
request, and on a cache hit nearly all of its time went to the way through
FastAPI (routing, dependencies, three Redis calls) rather than to its work.
`CachedDailyView` sits in front of the routes, inside the request context
and CORS, and answers such a request itself only when everything is in
order:

- the query is exactly `date=` and a date the route accepts, with a bearer
  token that `auth.Tokens` accepts;
- the caller's tenant may call (`Guard.quotas`);
- the view cache is trusted now (`Views.trusts_cache`);
- one `caching.ViewGate` call takes the address's and the caller's limits,
  both allowing, and finds the view cached.

Anything else goes on to the routes, which stay the one source of truth for
validation, errors and the OpenAPI document. Limits the gate took on the
way are handed to them (`Guard.taken`), so a request refused or missed here
counts once. An answer from here is the route's: the same `ok_rendered`
envelope and headers, the route's template in the log line and metrics, the
request id and `RateLimit` headers of the request context around it.
Nothing of a view is kept in this process: every answer is read from Redis,
so a write through any replica shows in the next read.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi.routing import APIRoute
from fastapi.security.utils import get_authorization_scheme_param
from starlette.types import ASGIApp, Receive, Scope, Send

from tm_domain import caching, storage
from tm_service import auth, errors, responses, schemas, views
from tm_service.metrics import Metrics
from tm_service.quotas import Guard

DAILY_PATH = "/api/v1/visitor/time/tasks/daily"
_QUERY_PREFIX = b"date="


class DailyViews:
    """What answering a cached daily view takes, gathered at start-up."""

    def __init__(
        self,
        *,
        gate: caching.ViewGate,
        guard: Guard,
        tokens: auth.Tokens,
        views: views.Views,
        metrics: Metrics,
        route: APIRoute,
    ) -> None:
        self.gate = gate
        self.guard = guard
        self.tokens = tokens
        self.views = views
        self.route = route
        # The counters' children, found once rather than by label each time.
        self.hits = metrics.cache.labels("daily", "hit")
        self.served = metrics.fast_views.labels("served")
        self.passed = metrics.fast_views.labels("passed")

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request if everything is in order; False leaves it to
        the routes, with the limits taken so far in the scope's state."""
        day = _day(scope.get("query_string", b""))
        token = _bearer(scope)
        if day is None or token is None or not self.views.trusts_cache():
            return False
        try:
            user = self.tokens.identity(token).user
            quotas = await self.guard.quotas(user.tenant_id)
        except (errors.ServiceError, storage.StoreUnavailable):
            # The routes refuse it in their own words.
            return False

        met = self.guard.stages(scope, user, quotas)
        try:
            admission = await self.gate.admit(
                views.key(user, "daily", day), [[bucket] for _, bucket in met]
            )
        except storage.StoreUnavailable:
            # The routes go on without Redis, as they do.
            return False
        names = (name for name, _ in met)
        self.guard.taken(scope, dict(zip(names, admission.verdicts, strict=False)))
        cached = admission.cached
        if cached is None or cached.body is None:
            return False

        scope.setdefault("state", {})["tenant"] = user.tenant_id
        scope["route"] = self.route
        self.hits.inc()
        await responses.ok_rendered(scope, cached.body)(scope, receive, send)

        return True


class CachedDailyView:
    """ASGI middleware: `DailyViews.answer` for the daily view's path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["path"] == DAILY_PATH
            and scope["method"] == "GET"
            and not scope.get("root_path")
        ):
            daily: DailyViews | None = getattr(scope["app"].state, "daily_views", None)
            if daily is not None:
                if await daily.answer(scope, receive, send):
                    daily.served.inc()
                    return
                daily.passed.inc()
        await self.app(scope, receive, send)


def route_of(routes: list[Any]) -> APIRoute:
    """The daily view's route, whose template the log line and metrics name."""
    for route in routes:
        if isinstance(route, APIRoute) and route.path == DAILY_PATH:
            return route
    raise LookupError(f"no route {DAILY_PATH}")


def _day(query: bytes) -> str | None:
    """The date of a query that is exactly `date=YYYY-MM-DD`, as the route
    would accept it; None for any other query."""
    if not query.startswith(_QUERY_PREFIX) or len(query) != len(_QUERY_PREFIX) + 10:
        return None
    text = query[len(_QUERY_PREFIX) :].decode("ascii", errors="replace")
    try:
        return date.fromisoformat(schemas.calendar_date(text)).isoformat()
    except ValueError:
        return None


def _bearer(scope: Scope) -> str | None:
    """The bearer token as FastAPI's `HTTPBearer` reads it, or None."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, credentials = get_authorization_scheme_param(
                value.decode("latin-1")
            )
            if scheme.lower() != "bearer" or not credentials:
                return None
            return credentials
    return None
