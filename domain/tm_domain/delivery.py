"""Delivery: the engine that sends each reminder at its time, once per channel.

The engine keeps the deliveries due soon in memory, sleeps until the earliest,
and then for each one:

1. claims it in the store: takes a lease on it that only one dispatch can
   hold, and only while the reminder revision is current, the task open and
   the delivery scheduled, so a cancelled, superseded or already sent
   delivery is never sent, whichever worker tries;
2. calls the provider;
3. settles it: sent with the provider's message id, scheduled again after a
   backoff for a transient failure, or failed.

Events from a stream driver (`accept`) make new schedules take effect at once;
a periodic sweep of the store is the source of truth that catches whatever an
event stream lost or delivered to another worker, and what fell due while no
worker ran. A claim left past its lease means a worker died inside the
provider call: the provider may or may not have sent it, so it is
marked failed as unknown rather than risk sending twice.

The engine knows neither Faust nor a database: the stream worker and the
single-process mode drive the same engine through the two ports below.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from tm_domain import reminders, scheduling
from tm_domain.errors import DeferredDelivery, PermanentDelivery, TransientDelivery
from tm_domain.events import Due, EventType, TaskEvent
from tm_domain.reminders import DeliveryState

log = logging.getLogger(__name__)

UNKNOWN_OUTCOME = "outcome unknown: the worker stopped during the provider call"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Message:
    """One reminder text on its way to one recipient."""

    channel: str
    to: str
    subject: str
    body: str
    tenant_id: str
    task_id: str
    due_at: datetime | None = None
    """When the reminder was due, for a sender that keeps its own record."""


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds the lease on, with what to send."""

    due: Due
    planned_at: datetime
    attempts: int
    message: Message
    claimed_at: datetime
    token: str
    """Tells this lease from any later one on the same delivery."""


class Result(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


class FailureReason(StrEnum):
    """Why a delivery failed for good, in few enough words to count by."""

    MISSED = "missed"
    """Later than the lateness limit; never attempted."""
    NO_PROVIDER = "no_provider"
    """No sender for the channel."""
    REJECTED = "rejected"
    """The provider refused the message for good (a 4xx)."""
    EXHAUSTED = "exhausted"
    """Transient failures until the attempts ran out."""


@dataclass(frozen=True)
class Settlement:
    """How a claimed delivery ended this time."""

    result: Result
    at: datetime
    attempted: bool
    provider_message_id: str | None = None
    error: str | None = None
    next_due_at: datetime | None = None
    lateness: timedelta | None = None
    reason: FailureReason | None = None
    """Set when `result` is FAILED."""

    @property
    def lateness_ms(self) -> int | None:
        if self.lateness is None:
            return None
        return round(self.lateness.total_seconds() * 1000)

    def delivery_fields(self) -> dict[str, Any]:
        """What this settlement sets in the delivery's stored record."""
        if self.result is Result.SENT:
            return {
                "state": str(DeliveryState.SENT),
                "sentAt": self.at,
                "providerMessageId": self.provider_message_id,
                "latenessMs": self.lateness_ms,
                "lastError": None,
            }
        if self.result is Result.RETRY:
            return {
                "state": str(DeliveryState.SCHEDULED),
                "dueAt": self.next_due_at,
                "lastError": self.error,
            }
        return {"state": str(DeliveryState.FAILED), "lastError": self.error}


def attempt_record(
    *,
    tenant_id: str | None,
    user_id: str | None,
    due: Due,
    attempt: int,
    attempted: bool,
    result: str,
    at: datetime,
    provider_message_id: str | None,
    error: str | None,
    lateness_ms: int | None,
) -> dict[str, Any]:
    """One attempt in a delivery's history, as every store keeps it; it holds
    no phone number or e-mail address."""
    return {
        "tenantId": tenant_id,
        "userId": user_id,
        "taskId": due.task_id,
        "revision": due.revision,
        "channel": due.channel,
        "attempt": attempt,
        "attempted": attempted,
        "result": result,
        "at": at,
        "providerMessageId": provider_message_id,
        "error": error,
        "latenessMs": lateness_ms,
    }


@dataclass(frozen=True)
class NotYet:
    """A claim refused because the store has the delivery scheduled later.

    The engine held an older time for it (from an event that a retry or a
    move has since overtaken, or from a sweep read before the change) and
    waits for `due.due_at` instead.
    """

    due: Due


def not_yet(task: Mapping[str, Any] | None, due: Due, now: datetime) -> NotYet | None:
    """NotYet if the task document has `due`'s delivery waiting past `now`."""
    waiting = (
        None
        if task is None
        else reminders.waiting_until(task, revision=due.revision, channel=due.channel)
    )
    if waiting is None or waiting <= now:
        return None

    return NotYet(replace(due, due_at=waiting))


class ReminderStore(Protocol):
    """Where reminders live; every step holds without multi-document transactions."""

    async def pending(self, *, until: datetime, limit: int) -> list[Due]:
        """Scheduled deliveries due at or before `until`, earliest first."""

    async def claim(
        self, due: Due, *, now: datetime, lease_until: datetime, owner: str
    ) -> Claim | NotYet | None:
        """Take the lease on a due delivery.

        NotYet when the delivery waits for a later time, None when it may
        not go out at all (settled, cancelled, superseded, held by another).
        """

    async def settle(self, claim: Claim, settlement: Settlement) -> None:
        """Record the end of an attempt and give up the claim's lease."""

    async def expire_leases(self, *, now: datetime, error: str) -> int:
        """Fail deliveries whose lease ran out during a send; how many."""


class Sender(Protocol):
    """A provider for one channel."""

    async def send(self, message: Message) -> str:
        """Send and return the provider's message id.

        Raises TransientDelivery when a later try may succeed,
        PermanentDelivery when none will, and DeferredDelivery when the
        message was held back without calling the provider.
        """


@dataclass(frozen=True)
class Outcome:
    """What became of one dispatch, for logs and metrics."""

    due: Due
    tenant_id: str
    settlement: Settlement
    attempts: int = 0
    """Provider attempts made on the delivery so far, this one included."""


@dataclass(frozen=True)
class EngineSettings:
    retry: scheduling.RetryPolicy = field(default_factory=scheduling.RetryPolicy)
    lateness: scheduling.LatenessPolicy = field(
        default_factory=scheduling.LatenessPolicy
    )
    lease: timedelta = timedelta(seconds=60)
    """How long a claim holds; longer than any provider call can take."""
    send_timeout: timedelta = timedelta(seconds=20)
    """How long one provider call may take before it counts as a timeout."""
    horizon: timedelta = timedelta(minutes=10)
    """How far ahead deliveries are held in memory."""
    sweep_every: timedelta = timedelta(seconds=15)
    """How often the store is read for due deliveries the events missed."""
    sweep_limit: int = 10_000
    concurrency: int = 64
    """How many provider calls may be under way at once."""


class ReminderEngine:
    def __init__(
        self,
        store: ReminderStore,
        senders: Mapping[str, Sender],
        *,
        owner: str,
        settings: EngineSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
        report: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.store = store
        self.senders = senders
        self.owner = owner
        self.settings = settings or EngineSettings()
        self.clock = clock
        self.report = report
        self.queue = scheduling.DueQueue()
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(self.settings.concurrency)
        self._sweeper: asyncio.Task[None] | None = None
        self._next_sweep: datetime | None = None
        self._stopping = False
        self._dispatched: list[set[tuple[str, int, str]]] = []
        """For each sweep under way, the deliveries dispatched since it began."""

    def accept(self, event: TaskEvent) -> None:
        """Take a task event into the schedule; older versions are ignored."""
        seen = self._versions.get(event.task_id)
        if seen is not None and event.version < seen:
            return
        self._versions[event.task_id] = event.version
        self._versions.move_to_end(event.task_id)
        while len(self._versions) > 100_000:
            self._versions.popitem(last=False)

        if event.type in (EventType.COMPLETED, EventType.DELETED):
            self.queue.forget_task(event.task_id)
        else:
            self.queue.forget_task(event.task_id, keep_revision=event.reminder_revision)
            horizon = self.clock() + self.settings.horizon
            self.queue.put_all(d for d in event.deliveries if d.due_at <= horizon)
        self._wakeup.set()

    async def sweep(self) -> None:
        """Read the store for what is due soon and for abandoned sends.

        What the store answers is as old as the read. A delivery dispatched
        meanwhile is left to its dispatch, which knows better; for any other
        the engine keeps the earlier of its own time and the store's (see
        `DueQueue.offer`).
        """
        dispatched: set[tuple[str, int, str]] = set()
        self._dispatched.append(dispatched)
        try:
            now = self.clock()
            expired = await self.store.expire_leases(now=now, error=UNKNOWN_OUTCOME)
            if expired:
                log.warning("delivery outcome unknown", extra={"count": expired})
            found = await self.store.pending(
                until=now + self.settings.horizon, limit=self.settings.sweep_limit
            )
        finally:
            self._dispatched = [d for d in self._dispatched if d is not dispatched]
        for due in found:
            if due.key not in dispatched:
                self.queue.offer(due)

    async def run(self) -> None:
        """Send deliveries as they fall due, until cancelled.

        Sweeps run beside the sends, never in their way: a sweep reads the
        whole store, which on a large one takes longer than a reminder may
        be late.
        """
        self._stopping = False
        self._next_sweep = self.clock()
        try:
            while True:
                now = self.clock()
                if self._next_sweep is not None and now >= self._next_sweep:
                    self._start_sweep()

                for due in self.queue.pop_due(now):
                    await self._slots.acquire()
                    task = asyncio.create_task(self._dispatch_in_slot(due))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)

                # Sleep until the next delivery or sweep, or until an event or
                # the end of a sweep brings an earlier one.
                # NB: no await between reading the queue and clearing the flag,
                # so an event cannot slip in unseen.
                wake_at = min(
                    (t for t in (self.queue.next_due(), self._next_sweep) if t),
                    default=None,
                )
                self._wakeup.clear()
                if wake_at is None:
                    await self._wakeup.wait()
                    continue
                delay = (wake_at - self.clock()).total_seconds()
                if delay > 0:
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), timeout=delay)
                    except TimeoutError:
                        pass
        finally:
            self._stopping = True
            if self._sweeper is not None:
                self._sweeper.cancel()
                await asyncio.gather(self._sweeper, return_exceptions=True)
            await self.drain()

    def _start_sweep(self) -> None:
        self._next_sweep = None  # none while this one runs
        self._sweeper = asyncio.create_task(self._sweep_safely(), name="sweep")
        self._sweeper.add_done_callback(self._swept)

    def _swept(self, task: asyncio.Task[None]) -> None:
        self._sweeper = None
        if self._stopping:
            return
        if task.cancelled():
            # Not by us: a driver gave up on its own. Sweep again all the same.
            log.warning("sweep cancelled")
        self._next_sweep = self.clock() + self.settings.sweep_every
        self._wakeup.set()

    async def drain(self) -> None:
        """Let the sends under way finish, so none is left ambiguous."""
        if self._in_flight:
            await asyncio.wait(
                set(self._in_flight), timeout=self.settings.send_timeout.total_seconds()
            )

    async def _sweep_safely(self) -> None:
        try:
            await self.sweep()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The store is down or slow: keep sending what is already held,
            # and try the sweep again at its next turn.
            log.exception("sweep failed")

    async def _dispatch_in_slot(self, due: Due) -> None:
        try:
            await self.dispatch(due)
        except asyncio.CancelledError:
            raise
        except Exception:
            # A store failure around a send: the delivery stays scheduled in
            # the store, claimed until its lease expires, for a later sweep.
            log.exception("dispatch failed", extra={"task_id": due.task_id})
        finally:
            self._slots.release()

    async def dispatch(self, due: Due) -> Outcome | None:
        """Claim, send and settle one delivery; None when it may not go out."""
        for dispatched in self._dispatched:
            dispatched.add(due.key)
        now = self.clock()
        claim = await self.store.claim(
            due, now=now, lease_until=now + self.settings.lease, owner=self.owner
        )
        if isinstance(claim, NotYet):
            self.queue.put(claim.due)
            self._wakeup.set()
            return None
        if claim is None:
            return None

        if self.settings.lateness.too_late(claim.planned_at, now):
            late = now - claim.planned_at
            settlement = Settlement(
                Result.FAILED,
                at=now,
                attempted=False,
                error=(
                    f"missed: due {_minutes(late)} ago, past the limit of "
                    f"{_minutes(self.settings.lateness.max_lateness)}"
                ),
                reason=FailureReason.MISSED,
            )
        else:
            settlement = await self._send(claim)

        await self.store.settle(claim, settlement)
        if settlement.result is Result.RETRY and settlement.next_due_at is not None:
            self.queue.put(
                Due(due.task_id, due.revision, due.channel, settlement.next_due_at)
            )
            self._wakeup.set()
        outcome = Outcome(
            due=due,
            tenant_id=claim.message.tenant_id,
            settlement=settlement,
            attempts=claim.attempts + (1 if settlement.attempted else 0),
        )
        if self.report is not None:
            self.report(outcome)

        return outcome

    async def _send(self, claim: Claim) -> Settlement:
        attempts = claim.attempts + 1
        sender = self.senders.get(claim.due.channel)
        if sender is None:
            # Give up: no provider was called, so this is no attempt either.
            return Settlement(
                Result.FAILED,
                at=self.clock(),
                attempted=False,
                error=f"no provider configured for {claim.due.channel}",
                reason=FailureReason.NO_PROVIDER,
            )
        try:
            provider_id = await asyncio.wait_for(
                sender.send(claim.message),
                timeout=self.settings.send_timeout.total_seconds(),
            )
        except DeferredDelivery as exc:
            # Wait: the channel holds this message back; nothing was sent.
            now = self.clock()
            return Settlement(
                Result.RETRY,
                at=now,
                attempted=False,
                error=exc.detail,
                next_due_at=now + exc.retry_after,
            )
        except TimeoutError:
            # Retry: the provider did not answer in time.
            error = f"timed out after {self.settings.send_timeout.total_seconds():g}s"
            return self._retry_or_fail(attempts, error)
        except TransientDelivery as exc:
            # Retry: timeouts, 5xx and 429 may pass.
            return self._retry_or_fail(attempts, exc.detail)
        except PermanentDelivery as exc:
            # Give up: the provider refused this message for good.
            return Settlement(
                Result.FAILED,
                at=self.clock(),
                attempted=True,
                error=exc.detail,
                reason=FailureReason.REJECTED,
            )

        sent_at = self.clock()
        return Settlement(
            Result.SENT,
            at=sent_at,
            attempted=True,
            provider_message_id=provider_id,
            lateness=sent_at - claim.planned_at,
        )

    def _retry_or_fail(self, attempts: int, error: str) -> Settlement:
        now = self.clock()
        if self.settings.retry.exhausted(attempts):
            return Settlement(
                Result.FAILED,
                at=now,
                attempted=True,
                error=f"{error} (gave up after {attempts} attempts)",
                reason=FailureReason.EXHAUSTED,
            )

        return Settlement(
            Result.RETRY,
            at=now,
            attempted=True,
            error=error,
            next_due_at=now + self.settings.retry.delay(attempts),
        )


def _minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:.0f} min"
