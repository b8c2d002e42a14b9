"""The application factory: the API wired to its store, relay and probes.

Start-up creates the store's indexes (a store that cannot be reached fails
start-up: nothing can be served without it) and starts the outbox relay in
the background. Kafka and Redis are not needed to start: while they are down
`/readyz` says so, writes go on, and the relay publishes when Kafka is back.

The rate limiter, the view cache and the idempotency keys are on Redis
unless given; given all three (`tm_adapters.memory_state` has in-process
ones), the service neither needs nor checks Redis.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from tm_adapters import connections, mongo, redis_state
from tm_adapters.outbox import KafkaPublisher, OutboxRelay, Publisher, RelaySettings
from tm_adapters.privacy_store import MongoPrivacyStore
from tm_adapters.task_store import MongoTaskStore
from tm_adapters.team_store import MongoTeamStore
from tm_adapters.tenant_store import MongoTenantStore
from tm_domain import caching, limits, storage
from tm_service import auth, errors, fast_views, openapi
from tm_service.auth import API_KEY_HEADER, TenantKeys
from tm_service.metrics import Metrics
from tm_service.metrics import router as metrics_router
from tm_service.middleware import RequestContext
from tm_service.privacy import PrivacyService, PurgeJob
from tm_service.quotas import (
    ClientLimit,
    DirectoryKeys,
    Guard,
    TenantDirectory,
    Tenants,
)
from tm_service.routes import admin, health
from tm_service.routes import analytics as analytics_routes
from tm_service.routes import batch as batch_routes
from tm_service.routes import owner as owner_routes
from tm_service.routes import privacy as privacy_routes
from tm_service.routes import tasks as task_routes
from tm_service.settings import ServiceSettings
from tm_service.tasks import TaskService
from tm_service.teams import TeamService
from tm_service.views import Views

# What a browser may send and read across origins.
_CORS_HEADERS = [
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "X-Request-ID",
    API_KEY_HEADER,
]
_CORS_EXPOSED = [
    "X-Request-ID",
    "Retry-After",
    "RateLimit",
    "RateLimit-Policy",
    "Idempotent-Replayed",
]


class TimeService(FastAPI):
    """The API. A cached daily view is answered before the stack when it can
    be (`fast_views.DailyViews`, set at start-up); every other request, and
    any that it leaves, goes through the stack."""

    daily_views: fast_views.DailyViews | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        daily = self.daily_views
        if (
            daily is not None
            and scope["type"] == "http"
            and scope["path"] == fast_views.DAILY_PATH
            and await daily.answer(scope, receive, send)
        ):
            return
        await super().__call__(scope, receive, send)


def _cors_options(settings: ServiceSettings) -> dict[str, Any]:
    return {
        "allow_origins": settings.cors_origins,
        "allow_methods": ["GET", "POST", "PUT", "PATCH", "DELETE"],
        "allow_headers": _CORS_HEADERS,
        "expose_headers": _CORS_EXPOSED,
        "max_age": 600,
    }


@dataclass(frozen=True)
class SharedState:
    """The components that several replicas share through Redis; any left
    None is built on Redis from the settings."""

    limiter: limits.RateLimiter | None = None
    view_cache: caching.ViewCache | None = None
    idempotency: caching.IdempotencyStore | None = None
    view_gate: caching.ViewGate | None = None
    """The limits and a cached read in one step, for the daily view in front
    of the routes; built on Redis only with the limiter and the view cache,
    since it must count and read what they do. Without one, every request
    goes through the routes."""


def create_app(
    settings: ServiceSettings,
    *,
    store: storage.TaskStore | None = None,
    publisher: Publisher | None = None,
    privacy_store: storage.PrivacyStore | None = None,
    team_store: storage.TeamStore | None = None,
    tenant_keys: TenantKeys | None = None,
    tenants: TenantDirectory | None = None,
    shared: SharedState | None = None,
    readiness: Mapping[str, health.Check] | None = None,
) -> TimeService:
    """The API; `store`, `privacy_store`, `team_store` and `publisher`
    replace MongoDB and Kafka when given, `shared` Redis. `tenants` is the
    tenant registry (by default MongoDB's when the task store is, else none:
    every tenant is allowed with the default quotas). `tenant_keys` checks
    the API keys of administrators' routes; by default the registry does.
    `readiness` replaces the checks of MongoDB, Redis and Kafka that
    `/readyz` runs, for a process that uses none of them."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: TimeService) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await _start(
                app,
                settings,
                stack,
                store=store,
                publisher=publisher,
                privacy_store=privacy_store,
                team_store=team_store,
                tenants=tenants,
                shared=shared or SharedState(),
            )
            if readiness is not None:
                app.state.readiness = dict(readiness)
            yield

    app = TimeService(
        title="time-manager",
        version="v1",
        summary="Plan your days and get reminded on time, by SMS and e-mail.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tokens = auth.Tokens(
        secret=settings.jwt_secret.get_secret_value(), leeway_s=settings.jwt_leeway_s
    )
    app.state.tenant_keys = tenant_keys
    app.state.metrics = metrics
    errors.install(app)
    app.include_router(health.router)
    app.include_router(metrics_router)
    app.include_router(batch_routes.router)
    app.include_router(task_routes.router)
    app.include_router(analytics_routes.router)
    app.include_router(owner_routes.router)
    app.include_router(privacy_routes.router)
    app.include_router(admin.router)

    # The last added runs first: the request context wraps everything, so
    # even a request refused for its address is logged and counted.
    app.add_middleware(ClientLimit)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, **_cors_options(settings))
    app.add_middleware(
        RequestContext, max_body_bytes=settings.max_body_bytes, metrics=metrics
    )
    openapi.install(app)

    return app


async def _start(
    app: TimeService,
    settings: ServiceSettings,
    stack: contextlib.AsyncExitStack,
    *,
    store: storage.TaskStore | None,
    publisher: Publisher | None,
    privacy_store: storage.PrivacyStore | None,
    team_store: storage.TeamStore | None,
    tenants: TenantDirectory | None,
    shared: SharedState,
) -> None:
    readiness: dict[str, Any] = {}

    # The stores, and with them the indexes, before anything else. A task
    # store given without a privacy store leaves the privacy routes off.
    if store is None:
        client = mongo.open_client(settings)
        stack.push_async_callback(client.close)
        db = mongo.database(client, settings)
        store = MongoTaskStore(db)
        privacy_store = privacy_store or MongoPrivacyStore(db)
        team_store = team_store or MongoTeamStore(db)
        tenants = tenants or MongoTenantStore(db)

        async def mongodb() -> None:
            await client.admin.command("ping")

        readiness["mongodb"] = mongodb
    await store.prepare()
    if privacy_store is not None:
        await privacy_store.prepare()
    if team_store is not None:
        await team_store.prepare()

    # Redis connects lazily, so a server that is down only shows in /readyz;
    # none is opened when every shared component was given.
    limiter, view_cache, idempotency, view_gate = (
        shared.limiter,
        shared.view_cache,
        shared.idempotency,
        shared.view_gate,
    )
    if limiter is None or view_cache is None or idempotency is None:
        link = redis_state.RedisLink(
            settings.redis_url,
            timeout_s=settings.redis_timeout_ms / 1000,
            retry_s=settings.redis_retry_ms / 1000,
            password=connections.redis_password(settings),
        )
        stack.push_async_callback(link.close)
        prefix = settings.redis_key_prefix
        if view_gate is None and limiter is None and view_cache is None:
            view_gate = redis_state.RedisViewGate(link, prefix=prefix)
        limiter = limiter or redis_state.RedisRateLimiter(link, prefix=prefix)
        view_cache = view_cache or redis_state.RedisViewCache(link, prefix=prefix)
        idempotency = idempotency or redis_state.RedisIdempotencyStore(
            link, prefix=prefix
        )
        readiness["redis"] = link.ping

    metrics: Metrics = app.state.metrics
    registry = Tenants(tenants, ttl_s=settings.tenant_cache_s)
    app.state.guard = Guard(
        settings, limiter=limiter, registry=registry, metrics=metrics
    )
    if app.state.tenant_keys is None and tenants is not None:
        app.state.tenant_keys = DirectoryKeys(registry)
    app.state.views = Views(view_cache, settings=settings, metrics=metrics)
    app.state.idempotency = idempotency
    if view_gate is not None and settings.view_fast_path:
        cors = None
        if settings.cors_origins:
            # The stack's CORS middleware, again: its headers, by its code.
            cors = CORSMiddleware(app, **_cors_options(settings))
        app.daily_views = fast_views.DailyViews(
            gate=view_gate,
            guard=app.state.guard,
            tokens=app.state.tokens,
            views=app.state.views,
            metrics=metrics,
            cors=cors,
        )
        stack.callback(setattr, app, "daily_views", None)
        stack.callback(metrics.before_scrape(app.daily_views.count_answers))

    # The relay runs beside the API; it waits out Kafka by itself.
    if publisher is None:
        publisher = KafkaPublisher(
            settings, request_timeout_ms=settings.kafka_request_timeout_ms
        )
    stack.push_async_callback(publisher.close)
    relay = OutboxRelay(
        store,
        publisher,
        settings=RelaySettings(
            interval=settings.outbox_relay_interval_ms / 1000,
            batch_size=settings.outbox_relay_batch,
            backoff_max=settings.outbox_backoff_max_ms / 1000,
        ),
    )
    relay.start()
    stack.push_async_callback(relay.stop)
    ready_publisher = publisher

    async def kafka() -> None:
        if not await ready_publisher.ready():
            raise ConnectionError("Kafka did not answer")

    readiness["kafka"] = kafka

    app.state.readiness = readiness
    app.state.relay = relay
    app.state.tasks = TaskService(
        store,
        after_write=relay.poke,
        view_limit=settings.view_max_tasks,
        on_change=app.state.views.invalidate,
    )
    app.state.teams = (
        None if team_store is None else TeamService(team_store, app.state.tasks)
    )
    app.state.privacy = None
    if privacy_store is not None:
        app.state.privacy = PrivacyService(
            privacy_store,
            app.state.tasks,
            retention_days=settings.data_retention_days,
            tenants=tenants,
        )
        purge_job = PurgeJob(app.state.privacy, interval_s=settings.purge_interval_s)
        purge_job.start()
        stack.push_async_callback(purge_job.stop)
