"""Fixtures of the reminder worker's integration tests: a database, the fakes.

Each test gets a database of its own, dropped afterwards, and fake providers
on a free loopback port. A server that is not running fails the test with a
message that says which one and how to start it; nothing here skips.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from tests.support.fake_providers import (
    SENDGRID_API_KEY,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeProviders,
)
from tm_adapters import mongo
from tm_adapters.reminder_store import MongoReminderStore
from tm_streams.settings import StreamsSettings

TWILIO_FROM = "+15005550006"
SENDGRID_FROM = "reminders@time-manager.test"
START_SERVERS = "start them with `bash scripts/infra up`"


def streams_settings_for(
    *, database: str, providers_url: str, **overrides: Any
) -> StreamsSettings:
    """Worker settings aimed at a test database and the fake providers."""
    values: dict[str, Any] = {
        "mongodb_database": database,
        "mongodb_timeout_ms": 3000,
        "twilio_account_sid": TWILIO_ACCOUNT_SID,
        "twilio_auth_token": TWILIO_AUTH_TOKEN,
        "twilio_from_number": TWILIO_FROM,
        "twilio_api_base": providers_url,
        "sendgrid_api_key": SENDGRID_API_KEY,
        "sendgrid_from_email": SENDGRID_FROM,
        "sendgrid_api_host": providers_url,
        "delivery_send_timeout_ms": 2000,
        "delivery_concurrency": 8,
        **overrides,
    }
    return StreamsSettings(**values)


def kafka_must_answer(bootstrap: str) -> None:
    """Fail the test at once when no Kafka broker listens at `bootstrap`."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return
    except OSError as exc:
        pytest.fail(
            f"Kafka is not reachable at {bootstrap} ({exc}); {START_SERVERS}",
            pytrace=False,
        )


@pytest.fixture
def fake_providers() -> Iterator[FakeProviders]:
    with FakeProviders() as fakes:
        yield fakes


@pytest.fixture
def streams_database_name() -> str:
    return f"tm_streams_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def streams_settings(
    streams_database_name: str, fake_providers: FakeProviders
) -> StreamsSettings:
    return streams_settings_for(
        database=streams_database_name, providers_url=fake_providers.url
    )


@pytest.fixture
async def streams_mongo(
    streams_settings: StreamsSettings,
) -> AsyncIterator[AsyncMongoClient[mongo.Document]]:
    client = mongo.open_client(streams_settings)
    try:
        await asyncio.wait_for(client.admin.command("ping"), timeout=5)
    except (PyMongoError, TimeoutError) as exc:
        await client.close()
        pytest.fail(
            f"MongoDB/FerretDB is not reachable at {streams_settings.mongodb_uri} "
            f"({type(exc).__name__}); {START_SERVERS}",
            pytrace=False,
        )
    try:
        yield client
    finally:
        await client.drop_database(streams_settings.mongodb_database)
        await client.close()


@pytest.fixture
def streams_db(
    streams_mongo: AsyncMongoClient[mongo.Document], streams_settings: StreamsSettings
) -> AsyncDatabase[mongo.Document]:
    return mongo.database(streams_mongo, streams_settings)


@pytest.fixture
def reminder_store(streams_db: AsyncDatabase[mongo.Document]) -> MongoReminderStore:
    return MongoReminderStore(streams_db)
