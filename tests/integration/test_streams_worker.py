"""The `tm-streams` worker as a process: Kafka in, provider calls out, on time.

The worker runs as deployed, from its console script, against the real Kafka
and MongoDB (a topic, consumer group and database of the test's own) and the
fake providers. Its periodic sweep is pushed far out, so the only way a
reminder can go out in time is the event the test publishes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from pymongo.asynchronous.database import AsyncDatabase

from tests.support.documents import EMAIL, PHONE, task_document, task_event
from tests.support.fake_providers import FakeProviders
from tests.support.fixtures import kafka_must_answer
from tm_adapters import mongo
from tm_streams.settings import StreamsSettings

pytestmark = pytest.mark.integration

STREAMS = Path(sys.executable).with_name("tm-streams")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Worker:
    """One `tm-streams` process and the JSON lines it logs."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [str(STREAMS)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def lines(self) -> list[dict]:
        found = []
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                found.append(json.loads(raw))
            except ValueError:
                found.append({"event": raw, "unparsed": True})
        return found

    def tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])

    async def wait_for_line(self, event: str, *, within: float) -> None:
        deadline = time.monotonic() + within
        while not any(event in str(line.get("event")) for line in self.lines()):
            if self.process.poll() is not None:
                pytest.fail(f"tm-streams exited early:\n{self.tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"tm-streams did not log {event!r}:\n{self.tail()}")
            await asyncio.sleep(0.05)

    def stop(self, *, within: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=within)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"tm-streams ignored SIGTERM:\n{self.tail()}")
        finally:
            self._log.close()


@pytest.fixture
def worker_names() -> dict[str, str]:
    run = uuid.uuid4().hex[:10]
    return {"topic": f"tm-test-events-{run}", "app_id": f"tm-test-streams-{run}"}


@pytest.fixture
async def kafka_topic(
    streams_settings: StreamsSettings, worker_names: dict[str, str]
) -> AsyncIterator[str]:
    kafka_must_answer(streams_settings.kafka_bootstrap)
    yield worker_names["topic"]

    admin = AIOKafkaAdminClient(bootstrap_servers=streams_settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([worker_names["topic"]])
    finally:
        await admin.close()


@pytest.fixture
def worker(
    streams_settings: StreamsSettings,
    worker_names: dict[str, str],
    kafka_topic: str,
    fake_providers: FakeProviders,
    tmp_path: Path,
) -> Iterator[Worker]:
    settings = streams_settings
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TM_")},
        "TM_MONGODB_URI": settings.mongodb_uri,
        "TM_MONGODB_DATABASE": settings.mongodb_database,
        "TM_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "TM_KAFKA_TASK_EVENTS_TOPIC": kafka_topic,
        "TM_KAFKA_TASK_EVENTS_PARTITIONS": "2",
        "TM_TWILIO_ACCOUNT_SID": settings.twilio_account_sid or "",
        "TM_TWILIO_AUTH_TOKEN": settings.twilio_auth_token.get_secret_value()
        if settings.twilio_auth_token
        else "",
        "TM_TWILIO_FROM_NUMBER": settings.twilio_from_number or "",
        "TM_TWILIO_API_BASE": fake_providers.url,
        "TM_SENDGRID_API_KEY": settings.sendgrid_api_key.get_secret_value()
        if settings.sendgrid_api_key
        else "",
        "TM_SENDGRID_FROM_EMAIL": settings.sendgrid_from_email or "",
        "TM_SENDGRID_API_HOST": fake_providers.url,
        "TM_SWEEP_INTERVAL_MS": "600000",
        "TM_STREAMS_APP_ID": worker_names["app_id"],
        "TM_STREAMS_DATA_DIR": str(tmp_path / "faust"),
        "TM_STREAMS_WEB_PORT": str(free_port()),
        "TM_LOG_FORMAT": "json",
        "TM_LOG_LEVEL": "INFO",
    }
    running = Worker(env, tmp_path / "tm-streams.log")
    try:
        yield running
    finally:
        running.stop()


async def test_an_event_on_kafka_gets_its_reminder_sent_on_time_by_the_worker(
    worker: Worker,
    kafka_topic: str,
    streams_db: AsyncDatabase[mongo.Document],
    streams_settings: StreamsSettings,
    fake_providers: FakeProviders,
) -> None:
    await worker.wait_for_line("Ready", within=40)
    producer = AIOKafkaProducer(bootstrap_servers=streams_settings.kafka_bootstrap)
    await producer.start()
    doc = task_document(send_at=datetime.now(UTC) + timedelta(seconds=2))
    await streams_db["visitor_time_tasks"].insert_one(doc)
    event = task_event(doc)

    try:
        await producer.send_and_wait(kafka_topic, b"{not json", key=b"junk")
        await producer.send_and_wait(
            kafka_topic,
            json.dumps(event.to_dict()).encode(),
            key=event.task_id.encode(),
        )
        deadline = time.monotonic() + 10
        while len(fake_providers.messages(accepted_only=True)) < 2:
            assert time.monotonic() < deadline, worker.tail()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
    finally:
        await producer.stop()

    received = fake_providers.messages()
    send_at = doc["reminder"]["sendAt"].timestamp()
    assert sorted(m["channel"] for m in received) == ["email", "sms"]
    for message in received:
        assert 0 <= message["receivedAt"] - send_at < 1.0, message
    stored = await streams_db["visitor_time_tasks"].find_one({"_id": doc["_id"]})
    deliveries = stored["reminder"]["deliveries"]
    assert {d["state"] for d in deliveries.values()} == {"sent"}
    assert worker.stop() == 0

    lines = worker.lines()
    outcomes = [line for line in lines if line.get("event") == "delivery"]
    assert sorted(line["channel"] for line in outcomes) == ["email", "sms"]
    for line in outcomes:
        assert line["result"] == "sent"
        assert line["task_id"] == event.task_id
        assert line["attempts"] == 1
        assert line["level"] == "info"
        assert (
            line["provider_message_id"]
            == deliveries[line["channel"]]["providerMessageId"]
        )
        assert 0 <= line["lateness_ms"] < 1000
    assert any(
        line.get("event") == "task event skipped" and line["level"] == "warning"
        for line in lines
    )
    assert any(line.get("event") == "delivery engine stopped" for line in lines)
    assert not [line for line in lines if line.get("unparsed")]
    log_text = worker.log_path.read_text()
    assert PHONE not in log_text and EMAIL not in log_text
