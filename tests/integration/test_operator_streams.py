"""tm-streams sending through the channels the operator publishes.

The operator runs as in production; the worker's engine, router and channel
book run in the test, reading the channel directory with a ServiceAccount
bound to exactly the chart's rules for the worker. The fake providers take
the channel's credentials, so a message that reaches them went out through
the channel, from its number.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from tests.integration.test_operator import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    secret,
    tenant,
    twilio_channel,
)
from tests.support.documents import task_document
from tests.support.fake_providers import FakeProviders
from tests.support.fixtures import TWILIO_FROM, streams_settings_for
from tests.support.kube import Kube
from tests.support.operator_fixtures import (
    OperatorHome,
    bind_service_account,
    new_namespace,
    unbind,
)
from tm_adapters import mongo, providers
from tm_adapters.channel_directory import RouteState
from tm_adapters.reminder_store import MongoReminderStore
from tm_domain.delivery import ReminderEngine
from tm_streams import routing

pytestmark = pytest.mark.integration

CHANNEL_FROM = "+14155550123"


async def eventually(check: Callable[[], Any], *, within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.fixture
def fakes() -> Iterator[FakeProviders]:
    with FakeProviders(twilio_sid=ACCOUNT_SID, twilio_token=AUTH_TOKEN) as running:
        yield running


@pytest.fixture
def streams_kubeconfig(
    kube: Kube, operator: OperatorHome, monkeypatch: pytest.MonkeyPatch
) -> Any:
    account = f"tm-streams-{uuid.uuid4().hex[:6]}"
    config = bind_service_account(kube, operator.namespace, account, "streams")
    monkeypatch.setenv("KUBECONFIG", str(config))
    yield config
    unbind(kube, operator.namespace, account)


async def test_the_worker_follows_a_channel_from_its_resource_without_restart(
    kube: Kube,
    operator: OperatorHome,
    fakes: FakeProviders,
    streams_kubeconfig: Any,
) -> None:
    # A tenant with a Twilio channel of one message a minute, and one without.
    namespace = new_namespace(kube, "tm-test")
    name = f"t-{uuid.uuid4().hex[:8]}"
    kube.create(
        secret(namespace, "twilio", accountSid=ACCOUNT_SID, authToken=AUTH_TOKEN)
    )
    kube.create(twilio_channel(namespace, "sms", rateLimit={"perMinute": 1}))
    kube.create(tenant(name, channels=[{"namespace": namespace, "name": "sms"}]))
    settings = streams_settings_for(
        database=f"tm_route_test_{uuid.uuid4().hex[:8]}",
        providers_url=fakes.url,
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        sweep_interval_ms=200,
    )
    router = routing.ChannelRouter(
        providers.senders_from_settings(settings),
        build=routing.sender_factory(settings),
        hold=timedelta(milliseconds=300),
    )
    book = routing.ChannelBook(
        router,
        namespace=operator.namespace,
        name="tm-reminder-channels",
        refresh=timedelta(milliseconds=200),
    )
    client: AsyncMongoClient[mongo.Document] = mongo.open_client(settings)
    db = mongo.database(client, settings)
    engine = ReminderEngine(
        MongoReminderStore(db),
        router.senders(),
        owner="test",
        settings=settings.engine(),
    )
    tasks = [asyncio.create_task(book.run()), asyncio.create_task(engine.run())]

    def route_state() -> Any:
        route = router.route(name, "sms")
        return None if route is None else route.state

    async def add_task(tenant_id: str) -> dict[str, Any]:
        doc = task_document(
            send_at=datetime.now(UTC), channels=["sms"], email=None, tenant_id=tenant_id
        )
        await db.visitor_time_tasks.insert_one(doc)
        return doc

    async def delivery(doc: dict[str, Any]) -> dict[str, Any]:
        found = await db.visitor_time_tasks.find_one({"_id": doc["_id"]})
        assert found is not None
        return dict(found["reminder"]["deliveries"]["sms"])

    def sent() -> list[dict[str, Any]]:
        return fakes.messages(accepted_only=True)

    try:
        await eventually(
            lambda: route_state() is RouteState.READY, within=30, what="a ready route"
        )

        # Act: one message of each tenant, then a second over the limit.
        first = await add_task(name)
        other = await add_task(f"{name}-plain")
        await eventually(lambda: len(sent()) == 2, within=10, what="two sends")
        over = await add_task(name)
        await asyncio.sleep(1.5)
        held_by_limit = await delivery(over)
        sent_before_suspension = list(sent())

        # Suspend: a new message is held, not sent, and not failed.
        kube.merge(
            "ReminderChannel",
            "sms",
            {"spec": {"suspend": True, "rateLimit": {"perMinute": 100}}},
            namespace,
        )
        await eventually(
            lambda: route_state() is RouteState.SUSPENDED, within=30, what="suspension"
        )
        held = await add_task(name)
        await asyncio.sleep(1.5)
        held_while_suspended = await delivery(held)
        sent_while_suspended = list(sent())

        # Resume: the held message goes out through the channel.
        kube.merge("ReminderChannel", "sms", {"spec": {"suspend": False}}, namespace)
        await eventually(lambda: len(sent()) == 3, within=30, what="the held send")

        # The provider has it; the worker settles it just after.
        async def settled() -> dict[str, Any] | None:
            found = await delivery(held)
            return found if found["state"] != "scheduled" else None

        released = await eventually(settled, within=10, what="the settlement")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        router.close()
        await client.drop_database(settings.mongodb_database)
        await client.close()
        kube.delete("TimeServiceTenant", name)

    froms = sorted(m["from"] for m in sent_before_suspension)
    assert froms == sorted([CHANNEL_FROM, TWILIO_FROM])
    assert first["tenantId"] == name and other["tenantId"] != name
    assert held_by_limit["state"] == "scheduled"
    assert held_by_limit["attempts"] == 0
    assert "limit of 1 a minute" in held_by_limit["lastError"]
    assert len(sent_while_suspended) == 2
    assert held_while_suspended["state"] == "scheduled"
    assert held_while_suspended["attempts"] == 0
    assert "suspended" in held_while_suspended["lastError"]
    assert released["state"] == "sent"
    assert sent()[-1]["from"] == CHANNEL_FROM
