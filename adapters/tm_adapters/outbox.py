"""The outbox relay: task events from the task documents to Kafka.

A user write stores its event in the task's `outbox` in the same update as the
change itself, so no event is lost when Kafka is down. The relay publishes the
pending events, keyed by task id, and then drops them from their task. After
each write (`poke`) it reads the tasks just written, by id; at start, on a
timer and after a failure it looks through all tasks for pending events, which
catches those a stopped process or another replica left behind. It backs off
while Kafka cannot be reached, so a write never waits for Kafka and the service
starts without it.

NB: the look through all tasks is cheap on MongoDB, where an index finds the
pending ones, but FerretDB reads every task document for it (1.1 s of its CPU
for 4,000 tasks), which is why writes are relayed by id and the full look runs
seldom.

An event published but not yet dropped when the process stops is published
again by the next relay: consumers compare versions and ignore repeats.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tm_adapters import connections
from tm_adapters.settings import ConnectionSettings
from tm_domain import storage

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Where events go: a topic keyed by task id."""

    async def publish(self, records: Sequence[tuple[str, bytes]]) -> list[bool]:
        """Send each (key, value) in order; True for each one acknowledged.

        Raises when the broker cannot be reached at all.
        """
        ...

    async def ready(self) -> bool:
        """Whether the broker answers; the caller bounds the wait."""
        ...

    async def close(self) -> None: ...


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode(event: Mapping[str, Any]) -> bytes:
    """The JSON of an event; datetimes as ISO 8601 with their UTC offset."""
    return orjson.dumps(dict(event), default=_json_default, option=orjson.OPT_NAIVE_UTC)


def consume_outcome(future: asyncio.Future[Any]) -> None:
    # Read the outcome so that a failed start nobody awaited is not reported
    # as an exception never retrieved.
    if not future.cancelled():
        future.exception()


class KafkaPublisher:
    """A Kafka producer that connects on first use and again after a failure.

    Every record is acknowledged by all in-sync replicas, and the idempotent
    producer keeps a retry inside one connection from writing it twice.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        request_timeout_ms: int = 10_000,
    ) -> None:
        self.bootstrap = settings.kafka_bootstrap
        self.topic = settings.kafka_task_events_topic
        self.request_timeout_ms = request_timeout_ms
        self.security = connections.kafka_options(settings)
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def publish(self, records: Sequence[tuple[str, bytes]]) -> list[bool]:
        producer = await self._connected()
        try:
            # Queue every record before waiting, so a batch costs one round
            # trip per partition rather than one per record.
            futures = [
                await producer.send(self.topic, value=value, key=key.encode())
                for key, value in records
            ]
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
        except KafkaError:
            # The producer could not even queue a record (no metadata for the
            # topic in time): start afresh on the next call.
            await self._reset()
            raise
        for outcome in outcomes:
            if isinstance(outcome, asyncio.CancelledError):
                raise outcome

        return [not isinstance(outcome, BaseException) for outcome in outcomes]

    async def ready(self) -> bool:
        # NB: a caller's timeout must not cancel a start half-way, or aiokafka
        # leaves its bootstrap connection open; the start goes on by itself.
        starting = asyncio.ensure_future(self._connected())
        starting.add_done_callback(consume_outcome)
        try:
            producer = await asyncio.shield(starting)
            await producer.client.fetch_all_metadata()
        except (KafkaError, OSError):
            return False

        return True

    async def close(self) -> None:
        async with self._lock:
            await self._reset()

    async def _connected(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is not None:
                return self._producer
            producer = self.new_producer()
            try:
                await _to_the_end(producer.start())
            except BaseException:
                # A producer that failed to start still holds a client; close
                # it, or it lingers and warns when collected.
                await _to_the_end(producer.stop())
                raise
            self._producer = producer

            return producer

    def new_producer(self) -> AIOKafkaProducer:
        """A producer with this publisher's options, not started."""
        return AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=self.request_timeout_ms,
            client_id="tm-service-outbox",
            **self.security,
        )

    async def _reset(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await _to_the_end(producer.stop())


async def _to_the_end(step: Awaitable[None]) -> None:
    """Run a producer's start or stop to its end, whatever cancels the caller.

    The relay is stopped by cancelling it, again and again until it ends.
    aiokafka leaves a connection open when its start is cancelled half-way
    (the bootstrap connection) or its stop is (the rest), to be reported
    when collected. The caller's cancellation is raised once the step is
    over; aiokafka bounds both by its timeouts.
    """
    running = asyncio.ensure_future(step)
    running.add_done_callback(consume_outcome)
    cancelled = False
    while True:
        try:
            await asyncio.shield(running)
            break
        except asyncio.CancelledError:
            cancelled = True
            if running.done():
                break
    if cancelled:
        raise asyncio.CancelledError


@dataclass(frozen=True)
class RelaySettings:
    interval: float = 10.0
    """Seconds between two looks through all tasks for pending events."""
    batch_size: int = 200
    """Tasks read per look; a full batch is followed at once by another."""
    backoff_initial: float = 0.5
    """Seconds to wait after the first failed round; doubled after each."""
    backoff_max: float = 30.0
    """Longest wait between two failed rounds, in seconds."""


@dataclass(frozen=True)
class Round:
    """What one round of the relay did."""

    tasks: int
    published: int
    failed: int


class OutboxRelay:
    def __init__(
        self,
        store: storage.OutboxStore,
        publisher: Publisher,
        *,
        settings: RelaySettings | None = None,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.settings = settings or RelaySettings()
        self._wakeup = asyncio.Event()
        self._written: set[str] = set()
        self._scan = True
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def poke(self, task_id: str | None = None) -> None:
        """Ask for a round now: a write just stored an event in `task_id`'s
        outbox, or somewhere (None), which makes the round look at all tasks."""
        if task_id is None:
            self._scan = True
        else:
            self._written.add(task_id)
        self._wakeup.set()

    async def relay_once(self, *, scan: bool = True) -> Round:
        """Publish the pending events of one batch of tasks, or (`scan=False`)
        of the tasks written since the last round."""
        if scan:
            entries = await self.store.pending_events(limit=self.settings.batch_size)
        else:
            written, self._written = self._written, set()
            entries = await self.store.events_of(sorted(written))
        records = [
            (entry.task_id, encode(event))
            for entry in entries
            for event in entry.events
        ]
        acknowledged = iter(await self.publisher.publish(records) if records else [])
        published = failed = 0
        for entry in entries:
            done = [str(event["id"]) for event in entry.events if next(acknowledged)]
            failed += len(entry.events) - len(done)
            # NB: a task marked pending with an empty outbox is dropped too,
            # which clears the mark instead of reading it on every round.
            if done or not entry.events:
                await self.store.drop_events(entry.task_id, done)
                published += len(done)

        return Round(tasks=len(entries), published=published, failed=failed)

    async def run(self) -> None:
        """Relay rounds until stopped, backing off while rounds fail."""
        backoff = self.settings.backoff_initial
        while not self._stopping:
            self._wakeup.clear()
            scan, self._scan = self._scan, False
            try:
                done = await self.relay_once(scan=scan)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Kafka or the store is down: events wait in their tasks;
                # look through them all after a growing pause.
                log.warning(
                    "outbox relay round failed",
                    extra={"error": repr(exc), "retry_in_s": backoff},
                )
                self._scan = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.backoff_max)
                continue

            if done.failed:
                # Some records were refused: wait like after a failed round.
                log.warning(
                    "outbox events not acknowledged",
                    extra={"failed": done.failed, "retry_in_s": backoff},
                )
                self._scan = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.settings.backoff_max)
                continue
            backoff = self.settings.backoff_initial

            if done.published:
                log.debug("outbox events published", extra={"count": done.published})
            # A full batch means more may be waiting: go on at once.
            if scan and done.published and done.tasks >= self.settings.batch_size:
                self._scan = True
            if self._scan or self._written:
                continue
            # NB: not asyncio.wait_for, which on Python 3.11 can swallow a
            # cancellation that arrives as the event is set, leaving stop()
            # waiting for ever.
            try:
                async with asyncio.timeout(self.settings.interval):
                    await self._wakeup.wait()
            except TimeoutError:
                self._scan = True

    def start(self) -> None:
        """Run the relay in the background of the running event loop."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self.run(), name="outbox-relay")

    async def stop(self) -> None:
        """End the relay; a round under way is abandoned, its events stay."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        # NB: pymongo 4.20's async client can swallow a cancellation that
        # arrives during a call, so the loop also checks the flag, and the
        # cancellation is repeated until the task has ended.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
        if not task.cancelled() and task.exception() is not None:
            log.error("outbox relay ended", exc_info=task.exception())
