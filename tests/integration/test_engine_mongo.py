"""The reminder engine with the MongoDB store and the real SDKs, against fakes.

Every test drives `ReminderEngine.run` as the worker does, with real time, and
reads the outcome back from the task document, the delivery history and the
requests the fake providers received.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.documents import task_document, task_event
from tests.support.fake_providers import FakeProviders
from tm_adapters import mongo, providers
from tm_adapters.reminder_store import MongoReminderStore
from tm_domain import reminders
from tm_domain.delivery import UNKNOWN_OUTCOME, Outcome, ReminderEngine
from tm_domain.events import Due
from tm_streams.settings import StreamsSettings

pytestmark = pytest.mark.integration


def utc_now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def engine_for(
    store: MongoReminderStore,
    settings: StreamsSettings,
    *,
    owner: str = "worker-a",
    outcomes: list[Outcome] | None = None,
    **tuning: Any,
) -> Iterator[ReminderEngine]:
    """An engine with the worker's settings, `tuning` applied on top."""
    senders = providers.senders_from_settings(settings)
    engine = ReminderEngine(
        store,
        senders,
        owner=owner,
        settings=dataclasses.replace(settings.engine(), **tuning),
        report=None if outcomes is None else outcomes.append,
    )
    try:
        yield engine
    finally:
        providers.close_senders(senders)


@asynccontextmanager
async def running(*engines: ReminderEngine) -> AsyncIterator[None]:
    runs = [asyncio.create_task(engine.run()) for engine in engines]
    try:
        yield
    finally:
        for run in runs:
            run.cancel()
        await asyncio.gather(*runs, return_exceptions=True)


async def wait_for(
    condition: Callable[[], Awaitable[bool]], *, within: float = 5.0
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {within} s")
        await asyncio.sleep(0.02)


def states_are(
    store: MongoReminderStore, task_ids: list[Any], *wanted: str
) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async for doc in store.tasks.find({"_id": {"$in": task_ids}}):
            for delivery in doc["reminder"]["deliveries"].values():
                if delivery["state"] not in wanted:
                    return False
        return True

    return check


async def delivery_of(store: MongoReminderStore, doc: dict, channel: str) -> dict:
    stored = await store.tasks.find_one({"_id": doc["_id"]})
    assert stored is not None

    return dict(stored["reminder"]["deliveries"][channel])


async def test_a_due_reminder_is_sent_once_on_each_channel(
    reminder_store: MongoReminderStore,
    streams_settings: StreamsSettings,
    fake_providers: FakeProviders,
) -> None:
    doc = task_document(send_at=utc_now() + timedelta(milliseconds=600))
    await reminder_store.tasks.insert_one(doc)

    with engine_for(reminder_store, streams_settings) as engine:
        async with running(engine):
            engine.accept(task_event(doc))
            await wait_for(states_are(reminder_store, [doc["_id"]], "sent"))
            # Another sweep and some time: nothing goes out a second time.
            await engine.sweep()
            await asyncio.sleep(0.3)

    received = fake_providers.messages()
    assert sorted(m["channel"] for m in received) == ["email", "sms"]
    send_at = doc["reminder"]["sendAt"].timestamp()
    for message in received:
        delivery = await delivery_of(reminder_store, doc, message["channel"])
        assert delivery["state"] == "sent"
        assert delivery["attempts"] == 1
        assert delivery["providerMessageId"] == message["id"]
        assert 0 <= delivery["latenessMs"] < 500
        assert 0 <= message["receivedAt"] - send_at < 0.5


async def test_two_engines_racing_send_each_delivery_exactly_once(
    reminder_store: MongoReminderStore,
    streams_settings: StreamsSettings,
    fake_providers: FakeProviders,
) -> None:
    send_at = utc_now() + timedelta(milliseconds=500)
    docs = [task_document(send_at=send_at, title=f"Task {i}") for i in range(15)]
    await reminder_store.tasks.insert_many(docs)
    other_client = mongo.open_client(streams_settings)
    other_store = MongoReminderStore(mongo.database(other_client, streams_settings))
    outcomes: list[Outcome] = []

    with (
        engine_for(reminder_store, streams_settings, owner="a", outcomes=outcomes) as a,
        engine_for(other_store, streams_settings, owner="b", outcomes=outcomes) as b,
    ):
        async with running(a, b):
            for doc in docs:
                a.accept(task_event(doc))
                b.accept(task_event(doc))
            await wait_for(states_are(reminder_store, [d["_id"] for d in docs], "sent"))
            await asyncio.gather(a.sweep(), b.sweep())
            await asyncio.sleep(0.3)
    await other_client.close()

    received = fake_providers.messages()
    counts = collections.Counter((m["channel"], m["body"]) for m in received)
    assert len(received) == 30
    assert set(counts.values()) == {1}
    assert len(outcomes) == 30
    assert {str(o.settlement.result) for o in outcomes} == {"sent"}


@pytest.mark.parametrize("cancellation", ["completed", "deleted", "revised"])
async def test_a_cancelled_delivery_in_the_queue_is_never_sent(
    reminder_store: MongoReminderStore,
    streams_settings: StreamsSettings,
    fake_providers: FakeProviders,
    cancellation: str,
) -> None:
    now = utc_now()
    doc = task_document(send_at=now + timedelta(milliseconds=800))
    await reminder_store.tasks.insert_one(doc)
    if cancellation == "revised":
        later = task_document(send_at=now + timedelta(hours=3), planned_at=now)
        change = {"reminder": {**later["reminder"], "revision": 2}}
    else:
        change = {"reminder": reminders.cancel(doc["reminder"])}
        change["completed" if cancellation == "completed" else "deletedAt"] = (
            True if cancellation == "completed" else now
        )

    with engine_for(
        reminder_store, streams_settings, sweep_every=timedelta(minutes=5)
    ) as engine:
        async with running(engine):
            engine.accept(task_event(doc))
            assert len(engine.queue) == 2
            await reminder_store.tasks.update_one(
                {"_id": doc["_id"]}, {"$set": change, "$inc": {"writeSeq": 1}}
            )
            await asyncio.sleep(1.2)
            taken_from_queue = len(engine.queue)

    assert taken_from_queue == 0
    assert fake_providers.messages() == []
    stored = await reminder_store.tasks.find_one({"_id": doc["_id"]})
    states = {d["state"] for d in stored["reminder"]["deliveries"].values()}
    assert states <= {"cancelled", "scheduled"}


async def test_a_provider_failing_twice_then_answering_ends_sent_after_three_attempts(
    reminder_store: MongoReminderStore,
    streams_settings: StreamsSettings,
    fake_providers: FakeProviders,
) -> None:
    doc = task_document(send_at=utc_now(), channels=["sms"])
    await reminder_store.tasks.insert_one(doc)
    fake_providers.script(status=503, count=2, provider="twilio")

    with engine_for(
        reminder_store,
        streams_settings,
        retry=dataclasses.replace(
            streams_settings.engine().retry, base=timedelta(milliseconds=20)
        ),
    ) as engine:
        async with running(engine):
            await wait_for(states_are(reminder_store, [doc["_id"]], "sent"))

    delivery = await delivery_of(reminder_store, doc, "sms")
    assert delivery["attempts"] == 3
    assert [m["status"] for m in fake_providers.messages()] == [503, 503, 201]
    assert delivery["providerMessageId"] == fake_providers.messages()[-1]["id"]
    history = await reminder_store.history(
        tenant_id="tenant-a", user_id="user-1", task_id=str(doc["_id"])
    )
    assert [(h["attempt"], h["result"]) for h in history] == [
        (1, "retry"),
        (2, "retry"),
        (3, "sent"),
    ]
    assert "HTTP 503" in history[0]["error"]


async def test_a_refused_message_fails_at_once_after_one_attempt(
    reminder_store: MongoReminderStore,
    streams_settings: StreamsSettings,
    fake_providers: FakeProviders,
) -> None:
    doc = task_document(send_at=utc_now(), channels=["sms"], phone="+1234")
    await reminder_store.tasks.insert_one(doc)

    with engine_for(reminder_store, streams_settings) as engine:
        async with running(engine):
            await wait_for(states_are(reminder_store, [doc["_id"]], "failed"))
            await asyncio.sleep(0.2)

    delivery = await delivery_of(reminder_store, doc, "sms")
    assert delivery["attempts"] == 1
    assert "code 21211" in delivery["lastError"]
    assert "+1234" not in delivery["lastError"]
    assert [m["status"] for m in fake_providers.messages()] == [400]


async def test_a_reminder_due_seven_hours_ago_is_marked_missed_and_not_sent(
    reminder_store: MongoReminderStore,
    streams_settings: StreamsSettings,
    fake_providers: FakeProviders,
) -> None:
    send_at = utc_now() - timedelta(hours=7)
    doc = task_document(send_at=send_at, planned_at=send_at - timedelta(days=1))
    await reminder_store.tasks.insert_one(doc)

    with engine_for(reminder_store, streams_settings) as engine:
        async with running(engine):
            await wait_for(states_are(reminder_store, [doc["_id"]], "failed"))

    for channel in ("sms", "email"):
        delivery = await delivery_of(reminder_store, doc, channel)
        assert delivery["attempts"] == 0
        assert delivery["lastError"].startswith("missed: due 420 min ago")
    assert fake_providers.messages() == []


async def test_a_reminder_due_during_a_short_downtime_is_sent_at_start_and_late(
    reminder_store: MongoReminderStore,
    streams_settings: StreamsSettings,
    fake_providers: FakeProviders,
) -> None:
    doc = task_document(send_at=utc_now() - timedelta(minutes=1))
    await reminder_store.tasks.insert_one(doc)

    with engine_for(reminder_store, streams_settings) as engine:
        async with running(engine):
            await wait_for(states_are(reminder_store, [doc["_id"]], "sent"))

    assert len(fake_providers.messages(accepted_only=True)) == 2
    for channel in ("sms", "email"):
        delivery = await delivery_of(reminder_store, doc, channel)
        assert 60_000 <= delivery["latenessMs"] < 65_000


async def test_a_delivery_claimed_past_its_lease_fails_as_unknown_unsent(
    reminder_store: MongoReminderStore,
    streams_settings: StreamsSettings,
    fake_providers: FakeProviders,
) -> None:
    now = utc_now()
    doc = task_document(send_at=now - timedelta(minutes=3), channels=["email"])
    await reminder_store.tasks.insert_one(doc)
    # A worker claimed it two minutes ago and died during the send.
    died = await reminder_store.claim(
        Due(str(doc["_id"]), 1, "email", now - timedelta(minutes=3)),
        now=now - timedelta(minutes=2),
        lease_until=now - timedelta(minutes=1),
        owner="a-worker-that-died",
    )
    assert died is not None

    with engine_for(reminder_store, streams_settings) as engine:
        async with running(engine):
            await wait_for(states_are(reminder_store, [doc["_id"]], "failed"))
            await asyncio.sleep(0.2)

    delivery = await delivery_of(reminder_store, doc, "email")
    assert delivery["lastError"] == UNKNOWN_OUTCOME
    assert await reminder_store.claims.count_documents({}) == 0
    assert fake_providers.messages() == []
