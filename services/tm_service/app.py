"""The application factory: the API wired to its store, relay and probes.

Start-up creates the store's indexes (a store that cannot be reached fails
start-up: nothing can be served without it) and starts the outbox relay in
the background. Kafka and Redis are not needed to start: while they are down
`/readyz` says so, writes go on, and the relay publishes when Kafka is back.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import redis.asyncio as redis
from fastapi import FastAPI

from tm_adapters import connections, mongo
from tm_adapters.outbox import KafkaPublisher, OutboxRelay, Publisher, RelaySettings
from tm_adapters.privacy_store import MongoPrivacyStore
from tm_adapters.task_store import MongoTaskStore
from tm_adapters.team_store import MongoTeamStore
from tm_adapters.tenant_store import MongoTenantStore
from tm_domain import storage
from tm_service import errors
from tm_service.auth import TenantKeys
from tm_service.middleware import RequestContext
from tm_service.privacy import PrivacyService, PurgeJob
from tm_service.routes import admin, health
from tm_service.routes import analytics as analytics_routes
from tm_service.routes import owner as owner_routes
from tm_service.routes import privacy as privacy_routes
from tm_service.routes import tasks as task_routes
from tm_service.settings import ServiceSettings
from tm_service.tasks import TaskService
from tm_service.teams import TeamService


def create_app(
    settings: ServiceSettings,
    *,
    store: storage.TaskStore | None = None,
    publisher: Publisher | None = None,
    privacy_store: storage.PrivacyStore | None = None,
    team_store: storage.TeamStore | None = None,
    tenant_keys: TenantKeys | None = None,
    readiness: Mapping[str, health.Check] | None = None,
) -> FastAPI:
    """The API; `store`, `privacy_store`, `team_store` and `publisher`
    replace MongoDB and Kafka when given. `tenant_keys` checks the API keys
    of administrators' routes; without it every API key is refused and only
    admin tokens work. `readiness` replaces the checks of MongoDB, Redis and
    Kafka that `/readyz` runs, for a process that uses none of them."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            await _start(
                app,
                settings,
                stack,
                store=store,
                publisher=publisher,
                privacy_store=privacy_store,
                team_store=team_store,
            )
            if readiness is not None:
                app.state.readiness = dict(readiness)
            yield

    app = FastAPI(
        title="time-manager",
        version="v1",
        summary="Plan your days and get reminded on time, by SMS and e-mail.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.tenant_keys = tenant_keys
    errors.install(app)
    app.include_router(health.router)
    app.include_router(task_routes.router)
    app.include_router(analytics_routes.router)
    app.include_router(owner_routes.router)
    app.include_router(privacy_routes.router)
    app.include_router(admin.router)
    app.add_middleware(RequestContext, max_body_bytes=settings.max_body_bytes)

    return app


async def _start(
    app: FastAPI,
    settings: ServiceSettings,
    stack: contextlib.AsyncExitStack,
    *,
    store: storage.TaskStore | None,
    publisher: Publisher | None,
    privacy_store: storage.PrivacyStore | None,
    team_store: storage.TeamStore | None,
) -> None:
    readiness: dict[str, Any] = {}
    tenants: MongoTenantStore | None = None

    # The stores, and with them the indexes, before anything else. A task
    # store given without a privacy store leaves the privacy routes off.
    if store is None:
        client = mongo.open_client(settings)
        stack.push_async_callback(client.close)
        db = mongo.database(client, settings)
        store = MongoTaskStore(db)
        privacy_store = privacy_store or MongoPrivacyStore(db)
        team_store = team_store or MongoTeamStore(db)
        tenants = MongoTenantStore(db)

        async def mongodb() -> None:
            await client.admin.command("ping")

        readiness["mongodb"] = mongodb
    await store.prepare()
    if privacy_store is not None:
        await privacy_store.prepare()
    if team_store is not None:
        await team_store.prepare()

    # Redis connects lazily, so a server that is down only shows in /readyz.
    redis_client = redis.Redis.from_url(
        settings.redis_url,
        password=connections.redis_password(settings),
        socket_connect_timeout=settings.readiness_timeout_ms / 1000,
        socket_timeout=settings.readiness_timeout_ms / 1000,
    )
    stack.push_async_callback(redis_client.aclose)

    async def redis_ping() -> None:
        await redis_client.ping()

    readiness["redis"] = redis_ping

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
        store, after_write=relay.poke, view_limit=settings.view_max_tasks
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
