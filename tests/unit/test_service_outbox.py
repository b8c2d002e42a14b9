"""The outbox relay on fakes: publish, drop, back off, come back."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError
from test_service_fakes import (
    MemoryTaskStore,
    RecordingPublisher,
    settings,
    stored_task,
)

from tm_adapters import outbox
from tm_adapters.outbox import KafkaPublisher, OutboxRelay, RelaySettings
from tm_domain import storage

FAST = RelaySettings(interval=0.01, backoff_initial=0.01, backoff_max=0.02)


async def test_a_round_publishes_pending_events_in_order_and_drops_them() -> None:
    store = MemoryTaskStore()
    first = stored_task(store)
    second = stored_task(store)
    store.docs[first]["outbox"] = [{"id": "a", "version": 1}, {"id": "b", "version": 2}]
    publisher = RecordingPublisher()

    done = await OutboxRelay(store, publisher).relay_once()

    assert (done.tasks, done.published, done.failed) == (2, 3, 0)
    assert [(key, orjson.loads(value)["id"]) for key, value in publisher.records] == [
        (first, "a"),
        (first, "b"),
        (second, "e1"),
    ]
    assert await store.pending_events(limit=10) == []


async def test_events_the_broker_refused_stay_for_the_next_round() -> None:
    store = MemoryTaskStore()
    task_id = stored_task(store)
    store.docs[task_id]["outbox"] = [{"id": "a"}, {"id": "b"}]
    publisher = RecordingPublisher()
    publisher.refuse = {1}

    done = await OutboxRelay(store, publisher).relay_once()

    assert (done.published, done.failed) == (1, 1)
    assert store.docs[task_id]["outbox"] == [{"id": "b"}]
    assert store.docs[task_id]["outboxPending"] is True


async def test_a_task_marked_pending_with_nothing_to_send_is_cleared() -> None:
    store = MemoryTaskStore()
    task_id = stored_task(store)
    store.docs[task_id]["outbox"] = []

    done = await OutboxRelay(store, RecordingPublisher()).relay_once()

    assert (done.tasks, done.published) == (1, 0)
    assert store.docs[task_id]["outboxPending"] is False


async def test_the_relay_backs_off_while_the_broker_is_down_then_catches_up() -> None:
    store = MemoryTaskStore()
    task_id = stored_task(store)
    publisher = RecordingPublisher()
    publisher.down = True
    relay = OutboxRelay(store, publisher, settings=FAST)

    relay.start()
    await asyncio.sleep(0.05)
    still_pending = store.docs[task_id]["outboxPending"]
    publisher.down = False
    for _ in range(100):
        if not store.docs[task_id]["outboxPending"]:
            break
        await asyncio.sleep(0.01)
    await relay.stop()

    assert still_pending is True
    assert store.docs[task_id]["outboxPending"] is False
    assert [key for key, _ in publisher.records] == [task_id]


async def test_a_poke_starts_a_round_without_waiting_for_the_timer() -> None:
    store = MemoryTaskStore()
    publisher = RecordingPublisher()
    relay = OutboxRelay(store, publisher, settings=RelaySettings(interval=30))
    relay.start()
    await asyncio.sleep(0.01)

    stored_task(store)
    relay.poke()
    for _ in range(100):
        if publisher.records:
            break
        await asyncio.sleep(0.01)
    await relay.stop()
    await relay.stop()

    assert len(publisher.records) == 1


async def test_stopping_while_a_round_fails_on_the_store_ends_quietly() -> None:
    store = MemoryTaskStore()
    store.fail_with = ConnectionError("store down")
    relay = OutboxRelay(store, RecordingPublisher(), settings=FAST)

    relay.start()
    await asyncio.sleep(0.03)
    await relay.stop()

    assert relay._task is None


def test_events_are_json_with_datetimes_carrying_their_offset() -> None:
    moment = datetime(2030, 1, 15, 8, 30, tzinfo=UTC)
    east = datetime(2030, 1, 15, 22, 30, tzinfo=timezone(timedelta(hours=14)))

    encoded = orjson.loads(
        outbox.encode({"at": moment, "east": east, "naive": datetime(2030, 1, 1)})
    )

    assert encoded == {
        "at": "2030-01-15T08:30:00+00:00",
        "east": "2030-01-15T22:30:00+14:00",
        "naive": "2030-01-01T00:00:00+00:00",
    }


def test_encoding_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        outbox.encode({"thing": object()})


async def test_the_kafka_publisher_fails_fast_and_reports_not_ready_without_kafka() -> (
    None
):
    publisher = KafkaPublisher(settings(kafka_bootstrap="127.0.0.1:1"))

    with pytest.raises(KafkaConnectionError):
        await publisher.publish([("task", b"{}")])
    ready = await publisher.ready()
    await publisher.close()

    assert ready is False


class CountingStore(MemoryTaskStore):
    """Counts the looks through all tasks, which FerretDB pays dearly for."""

    def __init__(self) -> None:
        super().__init__()
        self.scans = 0

    async def pending_events(self, *, limit: int) -> list[storage.OutboxEntry]:
        self.scans += 1
        return await super().pending_events(limit=limit)


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the relay did not get there")


async def test_a_poked_write_is_relayed_by_its_id_without_a_look_at_all_tasks() -> None:
    store = CountingStore()
    publisher = RecordingPublisher()
    relay = OutboxRelay(store, publisher, settings=RelaySettings(interval=30))
    relay.start()
    await until(lambda: store.scans == 1)  # the look at start

    written = stored_task(store)
    left_behind = stored_task(store)
    relay.poke(written)
    await until(lambda: bool(publisher.records))
    await relay.stop()

    assert [key for key, _ in publisher.records] == [written]
    assert store.docs[left_behind]["outboxPending"] is True
    assert store.scans == 1


async def test_after_a_failed_round_the_relay_looks_at_all_tasks() -> None:
    store = CountingStore()
    publisher = RecordingPublisher()
    relay = OutboxRelay(store, publisher, settings=FAST)
    relay.settings = RelaySettings(interval=30, backoff_initial=0.01)
    relay.start()
    await until(lambda: store.scans == 1)

    publisher.down = True
    task_id = stored_task(store)
    relay.poke(task_id)
    await asyncio.sleep(0.05)
    publisher.down = False
    await until(lambda: not store.docs[task_id]["outboxPending"])
    await relay.stop()

    assert store.scans >= 2
    assert [key for key, _ in publisher.records] == [task_id]


async def test_the_timer_makes_the_relay_look_at_all_tasks() -> None:
    store = CountingStore()
    publisher = RecordingPublisher()
    relay = OutboxRelay(store, publisher, settings=RelaySettings(interval=0.02))
    relay.start()
    await until(lambda: store.scans == 1)

    # Left by another process: nobody pokes this relay about it.
    task_id = stored_task(store)
    await until(lambda: not store.docs[task_id]["outboxPending"])
    await relay.stop()

    assert [key for key, _ in publisher.records] == [task_id]


class Slow:
    """A producer whose start and stop take a while, as connecting does."""

    def __init__(self) -> None:
        self.done: list[str] = []

    async def start(self) -> None:
        await asyncio.sleep(0.05)
        self.done.append("start")

    async def stop(self) -> None:
        await asyncio.sleep(0.05)
        self.done.append("stop")


@pytest.mark.parametrize("step", ["start", "stop"])
async def test_a_producers_start_or_stop_runs_to_its_end_though_the_relay_is_cancelled(
    step: str,
) -> None:
    producer = Slow()
    running = asyncio.create_task(outbox._to_the_end(getattr(producer, step)()))
    await asyncio.sleep(0)

    # The relay is stopped by cancelling it until it ends.
    while not running.done():
        running.cancel()
        await asyncio.wait({running}, timeout=0.01)

    assert running.cancelled()
    assert producer.done == [step]
