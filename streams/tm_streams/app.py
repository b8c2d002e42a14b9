"""The Faust application: task events in, reminders out.

One agent reads the task events topic and hands each event to the reminder
engine, which runs as a service of the app: started with the worker, and on
stop given the time to finish the sends under way, so none is left ambiguous.

Faust's web server, on `TM_STREAMS_WEB_PORT`, serves `GET /healthz` (200
while the engine runs or starts, 503 once it has stopped) and `GET /metrics`
(`tm_streams.metrics`); the consumer lag is read every
`TM_LAG_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any, cast

import faust
import faust.web
import mode
import structlog
from prometheus_client import generate_latest
from pymongo import AsyncMongoClient

from tm_adapters import mongo, providers
from tm_adapters.reminder_store import MongoReminderStore
from tm_domain.delivery import Outcome, ReminderEngine, Result, Sender
from tm_domain.events import TaskEvent
from tm_streams import brokers, routing
from tm_streams.metrics import Consumer, Metrics, consumer_lag
from tm_streams.settings import StreamsSettings

log = structlog.get_logger(__name__)


def decode_event(payload: bytes) -> TaskEvent:
    """A task event from its JSON; ValueError when it is not a sound one."""
    try:
        event = TaskEvent.from_dict(json.loads(payload))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a task event: {type(exc).__name__} {exc}") from exc

    # The engine compares instants; one without a UTC offset cannot be placed.
    instants = [event.occurred_at, *(d.due_at for d in event.deliveries)]
    if any(instant.utcoffset() is None for instant in instants):
        raise ValueError("not a task event: an instant has no UTC offset")

    return event


def report(outcome: Outcome) -> None:
    """The canonical line of one dispatch, with no recipient in it."""
    settlement = outcome.settlement
    lateness_ms = (
        None
        if settlement.lateness is None
        else round(settlement.lateness.total_seconds() * 1000)
    )
    fields: dict[str, Any] = {
        "tenant_id": outcome.tenant_id,
        "task_id": outcome.due.task_id,
        "revision": outcome.due.revision,
        "channel": outcome.due.channel,
        "result": str(settlement.result),
        "attempts": outcome.attempts,
        "lateness_ms": lateness_ms,
        "provider_message_id": settlement.provider_message_id,
        "error": settlement.error,
    }
    if settlement.result is Result.RETRY:
        log.debug("delivery retry", next_due_at=settlement.next_due_at, **fields)
    else:
        log.info("delivery", **fields)


class Delivery(mode.Service):
    """The reminder engine inside the worker, with its store and senders."""

    def __init__(
        self,
        settings: StreamsSettings,
        *,
        metrics: Metrics | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.engine: ReminderEngine | None = None
        self._client: AsyncMongoClient[mongo.Document] | None = None
        self._senders: dict[str, Sender] = {}
        self._router: routing.ChannelRouter | None = None
        self._runner: asyncio.Task[None] | None = None
        self._book: asyncio.Task[None] | None = None

    async def on_start(self) -> None:
        settings = self.settings
        # A delivery makes its calls one after another, so the engine needs
        # at most one connection per send under way; reminders that fall due
        # together would otherwise wait for the pool to grow.
        self._client = mongo.open_client(
            settings, keep_open=settings.delivery_concurrency
        )
        store = MongoReminderStore(mongo.database(self._client, settings))
        self._senders = providers.senders_from_settings(settings)
        if settings.channels_secret is not None:
            # Tenants' own channels first, the senders above for the rest.
            self._router = routing.ChannelRouter(
                self._senders,
                build=routing.sender_factory(settings),
                hold=timedelta(milliseconds=settings.channel_hold_ms),
            )
            namespace, _, name = settings.channels_secret.partition("/")
            book = routing.ChannelBook(
                self._router,
                namespace=namespace,
                name=name,
                refresh=timedelta(milliseconds=settings.channels_refresh_ms),
            )
            self._book = asyncio.create_task(book.run(), name="channel-book")
            self._senders = self._router.senders()
        elif not self._senders:
            log.warning("no provider configured: every delivery will fail")
        self.engine = ReminderEngine(
            store,
            self._senders,
            owner=settings.worker_id,
            settings=settings.engine(),
            report=self.report,
        )

        # The engine sweeps the store first thing, so what fell due while no
        # worker ran goes out now, before any event arrives.
        self._runner = asyncio.create_task(self.engine.run(), name="reminder-engine")
        log.info(
            "delivery engine started",
            worker_id=settings.worker_id,
            channels=sorted(self._senders),
        )

    async def on_stop(self) -> None:
        # NB: cancelling the engine's run lets it drain: the sends under way
        # finish and are settled before the store and senders close.
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
            self._runner = None
        if self._book is not None:
            self._book.cancel()
            await asyncio.gather(self._book, return_exceptions=True)
            self._book = None
        if self._router is not None:
            self._router.close()
        else:
            providers.close_senders(self._senders)
        if self._client is not None:
            await self._client.close()
            self._client = None
        log.info("delivery engine stopped")

    def report(self, outcome: Outcome) -> None:
        """The line and the counts of one dispatch."""
        report(outcome)
        self.metrics.on_outcome(outcome)

    def alive(self) -> bool:
        """False once the engine has stopped; starting counts as alive."""
        return self._runner is None or not self._runner.done()

    def accept(self, payload: bytes) -> None:
        """Take one raw task event into the schedule, or skip it if malformed."""
        try:
            event = decode_event(payload)
        except ValueError as exc:
            # Skip: a bad event must not stop the ones behind it; the sweep
            # still finds the task's deliveries in the store.
            log.warning("task event skipped", reason=str(exc), size=len(payload))
            return
        self.metrics.on_event(event)
        if self.engine is None:
            # Not started yet: the engine's first sweep will read the store.
            return

        self.engine.accept(event)


def create_app(
    settings: StreamsSettings, *, delivery: Delivery | None = None
) -> faust.App:
    """The worker's Faust app, with its agent and the delivery service."""
    app = faust.App(
        settings.streams_app_id,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=brokers.credentials(settings),
        store="memory://",
        datadir=str(settings.streams_data_dir),
        autodiscover=False,
        # Nothing runs on the leader only, so no leader topic is needed.
        topic_disable_leader=True,
        # A worker that died is dropped from the group after this long, instead
        # of Faust's 60 s, so its replacement starts consuming within seconds.
        # Heartbeats come from the consumer's own thread, never held up by us.
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        topic_partitions=settings.kafka_task_events_partitions,
        web_bind=settings.streams_web_host,
        web_host=settings.streams_web_host,
        web_port=settings.streams_web_port,
    )

    # Keys and values are read raw, so no payload can fail in Faust's codecs:
    # the agent decodes the JSON itself and skips what it cannot read.
    topic = app.topic(
        settings.kafka_task_events_topic,
        partitions=settings.kafka_task_events_partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        internal=True,
    )
    delivery = delivery or Delivery(settings)
    app.add_dependency(delivery)
    metrics = delivery.metrics

    @app.page("/healthz")
    async def healthz(web: faust.web.View, request: faust.web.Request) -> Any:
        if delivery.alive():
            return web.json({"status": "alive"})
        return web.json({"status": "stopped"}, status=503)

    @app.page("/metrics")
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> Any:
        # NB: aiohttp adds the charset itself and refuses one in the type.
        return web.text(
            generate_latest(metrics.registry).decode(),
            content_type="text/plain; version=0.0.4",
        )

    @app.timer(interval=settings.lag_interval_s)  # type: ignore[untyped-decorator]
    async def read_lag() -> None:
        try:
            metrics.set_lag(await consumer_lag(cast(Consumer, app.consumer)))
        except Exception:
            # The gauge keeps its last values; the next turn tries again.
            log.debug("consumer lag not read", exc_info=True)

    @app.agent(topic, name="task-events")
    async def take_task_events(events: faust.StreamT[bytes]) -> None:
        async for payload in events:
            try:
                delivery.accept(payload)
            except Exception:
                # Skip: an event that breaks the engine's intake is logged and
                # the stream goes on; the sweep covers its task.
                log.exception("task event failed")

    return app
