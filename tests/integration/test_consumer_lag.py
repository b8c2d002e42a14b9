"""The worker's consumer lag, read from a real Kafka."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from tm_adapters.consumer_lag import consumer_lag
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration


async def test_lag_is_what_the_group_has_not_committed_of_each_partition(
    settings: ServiceSettings, topic: str
) -> None:
    group = f"tm-lag-{uuid.uuid4().hex[:8]}"
    settings = settings.model_copy(update={"streams_app_id": group})
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(topic, f"event {n}".encode())
    finally:
        await producer.stop()

    before = await consumer_lag(settings, timeout_s=10)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        await consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(3, "")})
    finally:
        await consumer.stop()
    after = await consumer_lag(settings, timeout_s=10)

    assert (before.group, before.topic) == (group, topic)
    assert before.partitions == {0: 5}
    assert after.partitions == {0: 2}
    assert after.total == 2


async def test_an_unreachable_kafka_is_a_timeout_not_a_hang(
    settings: ServiceSettings,
) -> None:
    nowhere = settings.model_copy(update={"kafka_bootstrap": "127.0.0.1:9"})

    with pytest.raises((TimeoutError, KafkaError)):
        await consumer_lag(nowhere, timeout_s=1)
