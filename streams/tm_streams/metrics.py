"""Prometheus metrics of the reminder worker, served at `/metrics` on its web port.

The names are a contract with the Helm chart's alerts and dashboard:

    tm_reminders_scheduled_total{channel}         a delivery scheduled or rescheduled
    tm_reminders_sent_total{channel}              accepted by the provider
    tm_reminders_failed_total{channel,reason}     failed for good: missed,
                                                  no_provider, rejected, exhausted
    tm_reminders_cancelled_total{channel}         a scheduled delivery that will
                                                  not go out: task completed or
                                                  deleted, reminder disabled
    tm_delivery_lateness_seconds{channel}         histogram, sent deliveries only
    tm_consumer_lag{topic,partition}              gauge, events not yet read

Each worker counts what it sees: sends and failures it settled, and the
schedules and cancellations in the task events of its partitions. Summed
over the workers that is the whole, except around a rebalance, when the
worker taking over a partition does not know what the previous one had
scheduled. A delivery whose worker died inside the provider call is marked
failed by the next sweep and counted there in the log, not here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tm_domain.delivery import Outcome, Result
from tm_domain.events import EventType, TaskEvent

# A reminder is seconds late when all is well, hours when a worker was down.
_LATENESS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21_600)

# Open schedules remembered per worker; the oldest tasks are forgotten first.
_REMEMBERED_TASKS = 100_000


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.scheduled = Counter(
            "tm_reminders_scheduled",
            "Deliveries scheduled or rescheduled, from task events.",
            ["channel"],
            registry=self.registry,
        )
        self.sent = Counter(
            "tm_reminders_sent",
            "Deliveries the provider accepted.",
            ["channel"],
            registry=self.registry,
        )
        self.failed = Counter(
            "tm_reminders_failed",
            "Deliveries that failed for good, by reason.",
            ["channel", "reason"],
            registry=self.registry,
        )
        self.cancelled = Counter(
            "tm_reminders_cancelled",
            "Scheduled deliveries cancelled before they went out.",
            ["channel"],
            registry=self.registry,
        )
        self.lateness = Histogram(
            "tm_delivery_lateness_seconds",
            "How long after its time a delivery reached the provider.",
            ["channel"],
            buckets=_LATENESS,
            registry=self.registry,
        )
        self.lag = Gauge(
            "tm_consumer_lag",
            "Task events on the topic not yet read by this worker.",
            ["topic", "partition"],
            registry=self.registry,
        )
        # Per task: the latest event version seen and its open deliveries.
        self._open: OrderedDict[str, tuple[int, dict[str, int]]] = OrderedDict()

    def on_event(self, event: TaskEvent) -> None:
        """Count the schedules an event opens and the ones it closes."""
        version, known = self._open.get(event.task_id, (0, {}))
        if event.version < version:
            return  # older than what was seen: the engine ignores it too

        if event.type in (EventType.COMPLETED, EventType.DELETED):
            now_open: dict[str, int] = {}
        else:
            now_open = {d.channel: d.revision for d in event.deliveries}
        for channel, revision in now_open.items():
            if known.get(channel) != revision:
                self.scheduled.labels(channel).inc()
        for channel in known:
            if channel not in now_open:
                self.cancelled.labels(channel).inc()

        self._open[event.task_id] = (event.version, now_open)
        self._open.move_to_end(event.task_id)
        while len(self._open) > _REMEMBERED_TASKS:
            self._open.popitem(last=False)

    def on_outcome(self, outcome: Outcome) -> None:
        """Count a settled dispatch; a retry is not an outcome yet."""
        channel = outcome.due.channel
        settlement = outcome.settlement
        if settlement.result is Result.RETRY:
            return
        if settlement.result is Result.SENT:
            self.sent.labels(channel).inc()
            if settlement.lateness is not None:
                seconds = max(0.0, settlement.lateness.total_seconds())
                self.lateness.labels(channel).observe(seconds)
        else:
            reason = str(settlement.reason) if settlement.reason else "unknown"
            self.failed.labels(channel, reason).inc()

        # Settled: no longer open, so a later event cannot cancel it.
        found = self._open.get(outcome.due.task_id)
        if found is not None and found[1].get(channel) == outcome.due.revision:
            del found[1][channel]

    def set_lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        """The lag of each partition assigned now; others are dropped."""
        self.lag.clear()
        for (topic, partition), lag in lags.items():
            self.lag.labels(topic, str(partition)).set(lag)


class TopicPartition(Protocol):
    topic: str
    partition: int


class Consumer(Protocol):
    """What the lag needs of Faust's consumer."""

    def assignment(self) -> Iterable[TopicPartition]: ...

    def highwater(self, tp: TopicPartition) -> int | None: ...

    async def position(self, tp: TopicPartition) -> int | None: ...


async def consumer_lag(consumer: Consumer) -> dict[tuple[str, int], int]:
    """Events not yet read, per assigned partition: its end less our position.

    A partition whose end or position is not known yet (no fetch so far) is
    left out rather than shown as zero.
    """
    lags = {}
    for tp in consumer.assignment():
        end = consumer.highwater(tp)
        position = await consumer.position(tp)
        if end is None or position is None:
            continue
        lags[(tp.topic, tp.partition)] = max(0, end - position)

    return lags
