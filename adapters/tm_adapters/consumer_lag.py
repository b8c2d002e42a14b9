"""How far the reminder worker's consumer group trails the task events topic.

Lag of a partition is its end offset minus the group's committed offset: the
events written that the worker has not yet taken in. A partition the group
never committed counts from its beginning.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tm_adapters import connections
from tm_adapters.outbox import consume_outcome
from tm_adapters.settings import ConnectionSettings


@dataclass(frozen=True)
class Lag:
    group: str
    topic: str
    partitions: dict[int, int]

    @property
    def total(self) -> int:
        return sum(self.partitions.values())


async def consumer_lag(settings: ConnectionSettings, *, timeout_s: float) -> Lag:
    """The lag of `settings.streams_app_id` on the task events topic.

    Raises TimeoutError, or a KafkaError, when Kafka does not answer in time.
    """
    # NB: a timeout must not cancel a client's start half-way, or aiokafka
    # leaves its bootstrap connection open: the read runs as a task of its
    # own, bounded by the clients' request timeout, and closes its clients
    # even after this call has given up on it.
    reading = asyncio.ensure_future(_read(settings, timeout_s=timeout_s))
    reading.add_done_callback(consume_outcome)
    async with asyncio.timeout(timeout_s):
        return await asyncio.shield(reading)


async def _read(settings: ConnectionSettings, *, timeout_s: float) -> Lag:
    group, topic = settings.streams_app_id, settings.kafka_task_events_topic
    timeout_ms = max(1000, int(timeout_s * 1000))
    security = connections.kafka_options(settings)
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=timeout_ms,
        **security,
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=timeout_ms,
        enable_auto_commit=False,
        **security,
    )
    try:
        await admin.start()
        await consumer.start()
        committed = await admin.list_consumer_group_offsets(group)
        [described] = await admin.describe_topics([topic])
        # An unknown topic (error 3) has no partitions: nothing to read.
        partitions = sorted(p["partition"] for p in described["partitions"])
        wanted = [TopicPartition(topic, p) for p in partitions]
        ends = await consumer.end_offsets(wanted) if wanted else {}
        starts = await consumer.beginning_offsets(wanted) if wanted else {}
    finally:
        await consumer.stop()
        await admin.close()

    lag = {}
    for tp in wanted:
        done = committed.get(tp)
        position = done.offset if done is not None and done.offset >= 0 else starts[tp]
        lag[tp.partition] = max(0, ends[tp] - position)
    return Lag(group=group, topic=topic, partitions=lag)
