"""Delivery in one process: events straight into the engine, reminders to this machine.

`EngineFeed` is the outbox relay's `Publisher` when there is no Kafka: it
hands each task event the relay publishes to the engine, as the worker's
stream agent does with the events it reads from the topic.

`LocalOutbox` is a `Sender` for a channel without provider credentials. It
delivers to this machine: one line on the console, its recipient masked,
and one JSON line in a file a person or a test can read, with the channel,
the recipient, the text, and when the reminder was due and when it went out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from tm_adapters import providers
from tm_adapters.settings import DeliverySettings
from tm_domain.delivery import Message, Outcome, ReminderEngine, Result, Sender
from tm_domain.errors import TransientDelivery
from tm_domain.events import TaskEvent
from tm_domain.reminders import Channel

log = logging.getLogger(__name__)


class EngineFeed:
    """A `Publisher` whose subscriber is the delivery engine in this process."""

    def __init__(self, engine: ReminderEngine) -> None:
        self.engine = engine

    async def publish(self, records: Sequence[tuple[str, bytes]]) -> list[bool]:
        for key, value in records:
            try:
                event = TaskEvent.from_dict(json.loads(value))
            except (ValueError, KeyError, TypeError) as exc:
                # Skip: the engine's sweep still finds the task's deliveries.
                log.warning(
                    "task event skipped", extra={"task_id": key, "reason": repr(exc)}
                )
                continue
            self.engine.accept(event)

        # Every event is taken: the relay may drop them from their tasks.
        return [True] * len(records)

    async def ready(self) -> bool:
        return True

    async def close(self) -> None:
        return None


def mask_recipient(recipient: str) -> str:
    """A recipient a person can recognise on a screen without reading it:
    the start and end of a number, the first letter and domain of an address."""
    if "@" in recipient:
        name, _, domain = recipient.rpartition("@")
        return f"{name[:1]}***@{domain}"
    if len(recipient) > 6:
        return f"{recipient[:3]}{'*' * (len(recipient) - 5)}{recipient[-2:]}"

    return "*" * len(recipient)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def utc_now() -> datetime:
    return datetime.now(UTC)


class LocalOutbox:
    """Delivers reminders to the console and to a JSON-lines file."""

    def __init__(
        self,
        path: Path,
        *,
        console: TextIO,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.path = path
        self.console = console
        self.clock = clock
        self._lock = threading.Lock()

    async def send(self, message: Message) -> str:
        message_id = f"local-{uuid.uuid4().hex}"
        sent_at = self.clock()
        record: dict[str, Any] = {
            "id": message_id,
            "channel": message.channel,
            "recipient": message.to,
            "subject": message.subject,
            "text": message.body,
            "tenantId": message.tenant_id,
            "taskId": message.task_id,
            "dueAt": _iso(message.due_at),
            "sentAt": _iso(sent_at),
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            await asyncio.to_thread(self._append, line)
        except OSError as exc:
            # Retry: a full disk or a permission can be fixed while we wait.
            raise TransientDelivery(f"local outbox: {exc.strerror}") from exc

        text = " / ".join(line for line in message.body.splitlines() if line)
        print(
            f"reminder {message.channel} to {mask_recipient(message.to)}: {text}",
            file=self.console,
            flush=True,
        )

        return message_id

    def _append(self, line: str) -> None:
        # One writer at a time, and the line on disk before it counts as sent.
        with self._lock:
            descriptor = os.open(
                self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600
            )
            try:
                os.write(descriptor, line.encode())
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


def senders(
    settings: DeliverySettings, outbox: LocalOutbox
) -> tuple[dict[str, Sender], list[str]]:
    """A sender for each channel: its provider where credentials are set,
    the local outbox elsewhere; and the channels that use the outbox."""
    configured = providers.senders_from_settings(settings)
    local = [str(channel) for channel in Channel if channel not in configured]
    chosen: dict[str, Sender] = {str(c): configured.get(c, outbox) for c in Channel}

    return chosen, local


def report(outcome: Outcome) -> None:
    """The canonical line of one dispatch, with no recipient in it."""
    settlement = outcome.settlement
    fields = {
        "tenant_id": outcome.tenant_id,
        "task_id": outcome.due.task_id,
        "revision": outcome.due.revision,
        "channel": outcome.due.channel,
        "result": str(settlement.result),
        "attempts": outcome.attempts,
        "lateness_ms": (
            None
            if settlement.lateness is None
            else round(settlement.lateness.total_seconds() * 1000)
        ),
        "provider_message_id": settlement.provider_message_id,
        "error": settlement.error,
    }
    if settlement.result is Result.RETRY:
        log.debug("delivery retry", extra=fields)
    else:
        log.info("delivery", extra=fields)
