"""Fixtures on the real servers: FerretDB (or MongoDB), Kafka and Redis.

Addresses come from TM_MONGODB_URI, TM_KAFKA_BOOTSTRAP and TM_REDIS_URL
(`eval "$(scripts/infra env)"`), with the loopback defaults of
`scripts/infra up`. A server that cannot be reached fails the tests that need
it, saying which: integration tests never skip.

Each test gets a database and a Kafka topic of its own, named uniquely, and
the database is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import orjson
import pytest
import redis as sync_redis
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI
from pymongo import AsyncMongoClient

from tests.support import documents
from tm_adapters.settings import ConnectionSettings
from tm_service.app import create_app
from tm_service.settings import ServiceSettings

SECRET = "integration-test-secret-long-enough-0123456789"
TASKS = "/api/v1/visitor/time/tasks"
CLOSED_PORT = "127.0.0.1:1"
"""A loopback address where nothing listens: Kafka or Redis being down."""


def _address(url: str, default_port: int) -> tuple[str, int]:
    if "://" not in url:
        url = f"tcp://{url.split(',')[0]}"
    parts = urlsplit(url)
    host = (parts.hostname or "127.0.0.1").split(",")[0]
    return host, parts.port or default_port


@pytest.fixture(scope="session")
def servers() -> ConnectionSettings:
    """The servers' addresses, after checking that each one listens."""
    found = ConnectionSettings()
    wanted = [
        ("MongoDB (TM_MONGODB_URI)", _address(found.mongodb_uri, 27017)),
        ("Kafka (TM_KAFKA_BOOTSTRAP)", _address(found.kafka_bootstrap, 9092)),
        ("Redis (TM_REDIS_URL)", _address(found.redis_url, 6379)),
    ]
    down = []
    for name, (host, port) in wanted:
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as exc:
            down.append(f"{name} at {host}:{port}: {exc}")
    if down:
        pytest.fail(
            "integration servers not reachable: "
            + "; ".join(down)
            + ". Start them with `scripts/infra up` and "
            + '`eval "$(scripts/infra env)"`.',
            pytrace=False,
        )

    return found


@pytest.fixture(autouse=True)
def _collect_pymongo_monitor_sockets(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect, after each service test, what pymongo's monitor left behind.

    NB: pymongo 4.20's async server monitor can leave the socket of a
    connection attempt under way when its client is closed. Collected
    later, in another test's event loop, it fails that test with a
    ResourceWarning; collected here, right after the client closed, its
    warning is dropped. Only unclosed sockets are ignored, and only here.
    """
    yield
    if not request.module.__name__.startswith("test_service_"):
        return
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="unclosed <socket.socket", category=ResourceWarning
        )
        gc.collect()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def settings(servers: ConnectionSettings, unique: str) -> Iterator[ServiceSettings]:
    """The service's settings on the test's own database, topic and Redis
    keys; the keys are deleted afterwards."""
    chosen = ServiceSettings(
        mongodb_uri=servers.mongodb_uri,
        mongodb_database=f"tm_test_{unique}",
        mongodb_timeout_ms=5000,
        kafka_bootstrap=servers.kafka_bootstrap,
        kafka_task_events_topic=f"tm-test-events-{unique}",
        redis_url=servers.redis_url,
        redis_key_prefix=f"tm-test-{unique}:",
        jwt_secret=SECRET,
        outbox_relay_interval_ms=100,
        readiness_timeout_ms=2000,
    )
    yield chosen
    with sync_redis.Redis.from_url(servers.redis_url) as leftover:
        keys = list(leftover.scan_iter(f"{chosen.redis_key_prefix}*", count=1000))
        if keys:
            leftover.delete(*keys)


@pytest.fixture
async def mongo(settings: ServiceSettings) -> AsyncIterator[AsyncMongoClient[Any]]:
    """A client on the test's database, which is dropped afterwards."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(
        settings.mongodb_uri, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    try:
        yield client
    finally:
        await client.drop_database(settings.mongodb_database)
        await client.close()


@pytest.fixture
async def topic(settings: ServiceSettings) -> AsyncIterator[str]:
    """The test's own task events topic, with one partition for a total order."""
    name = settings.kafka_task_events_topic
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name=name, num_partitions=1, replication_factor=1)]
        )
        yield name
        await admin.delete_topics([name])
    finally:
        await admin.close()


@pytest.fixture
async def app(
    settings: ServiceSettings, mongo: AsyncMongoClient[Any], topic: str
) -> AsyncIterator[FastAPI]:
    """The service on the real servers, started and stopped by its lifespan."""
    service = create_app(settings)
    async with service.router.lifespan_context(service):
        yield service


@contextlib.asynccontextmanager
async def _started(
    settings: ServiceSettings, **parts: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    service = create_app(settings, **parts)
    async with service.router.lifespan_context(service):
        transport = httpx.ASGITransport(app=service)
        async with httpx.AsyncClient(transport=transport, base_url="http://tm") as http:
            yield service, http


@pytest.fixture
def started(
    mongo: AsyncMongoClient[Any], topic: str
) -> Callable[..., contextlib.AbstractAsyncContextManager[tuple[FastAPI, Any]]]:
    """`async with started(settings, **parts) as (app, client)`: one more
    service on the test's database and topic, with its own settings."""
    return _started


@pytest.fixture
async def redis_client(settings: ServiceSettings) -> AsyncIterator[Any]:
    """A client on the real Redis, to look at the keys the service wrote."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tm") as http:
        yield http


def _token(
    *, sub: str = "user-a", tenant: str = "tenant-1", role: str = "visitor"
) -> str:
    claims = {"sub": sub, "tenant": tenant, "role": role, "exp": time.time() + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def _bearer(**claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {_token(**claims)}"}


def _example(**overrides: Any) -> dict[str, Any]:
    return documents.design_example(**overrides)


async def _consume(
    bootstrap: str, topic: str, *, count: int, within: float = 20.0, settle: float = 1.0
) -> list[tuple[str, dict[str, Any]]]:
    """The (key, event) pairs on `topic`, from the start.

    Reads until `count` arrived, then `settle` seconds more to catch extras,
    or until `within` seconds passed.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: list[tuple[str, dict[str, Any]]] = []
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    key = record.key.decode() if record.key else ""
                    found.append((key, orjson.loads(record.value or b"null")))
            if len(found) >= count:
                deadline = min(deadline, time.monotonic() + settle)
    finally:
        await consumer.stop()

    return found


async def _eventually(check: Any, *, within: float = 10.0) -> Any:
    """Call `check` until it returns something truthy, or fail after `within`."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value or time.monotonic() > deadline:
            return value
        await asyncio.sleep(0.1)


Events = Callable[..., Awaitable[list[tuple[str, dict[str, Any]]]]]


@pytest.fixture
def bearer() -> Callable[..., dict[str, str]]:
    """`bearer(sub=..., tenant=..., role=...)`: an Authorization header."""
    return _bearer


@pytest.fixture
def example() -> Callable[..., dict[str, Any]]:
    """`example(**overrides)`: the design document's create body, in 2030."""
    return _example


@pytest.fixture
def events(settings: ServiceSettings, topic: str) -> Events:
    """`await events(count=n)`: the (key, event) pairs on the test's topic."""

    async def read(*, count: int, within: float = 20.0) -> Any:
        return await _consume(
            settings.kafka_bootstrap, topic, count=count, within=within
        )

    return read


@pytest.fixture
def eventually() -> Callable[..., Awaitable[Any]]:
    return _eventually


# ---------------------------------------------------------------------------
# Reminder worker (tm_streams): fake providers, a database of the test's own
# and the reminder store on it. Defined in tests/support/fixtures.py; pytest
# finds fixtures by name, so importing them here is using them.
# ---------------------------------------------------------------------------
from tests.support.fixtures import (  # noqa: E402, F401
    fake_providers,
    reminder_store,
    streams_database_name,
    streams_db,
    streams_mongo,
    streams_settings,
)

# ---------------------------------------------------------------------------
# Operator (tm_operator): the kube servers, the CRDs and one operator process
# for the session. Defined in tests/support/operator_fixtures.py.
# ---------------------------------------------------------------------------
from tests.support.operator_fixtures import kube, operator  # noqa: E402, F401

# ---------------------------------------------------------------------------
# The storage contract: the stores of a fresh database on MongoDB wire and
# on SQLite, one test run each. Defined in tests/support/stores.py.
# ---------------------------------------------------------------------------
from tests.support.stores import backend  # noqa: E402, F401
