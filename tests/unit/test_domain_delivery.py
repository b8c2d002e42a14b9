"""The reminder engine, driven through fakes of its two ports: the store and a sender.

The fake store keeps deliveries in a dictionary and moves them with the same
conditional steps the real store takes: a claim succeeds only for a scheduled
delivery that is due, of the current revision of an open task, and that no
other dispatch holds; a settle only while its lease was not taken over.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tm_domain import delivery, reminders, scheduling
from tm_domain.delivery import (
    Claim,
    EngineSettings,
    Message,
    NotYet,
    Outcome,
    ReminderEngine,
    Result,
    Settlement,
)
from tm_domain.errors import (
    DeferredDelivery,
    DeliveryError,
    PermanentDelivery,
    TransientDelivery,
)
from tm_domain.events import Due, EventType, TaskEvent
from tm_domain.reminders import DeliveryState

PHONE = "+14155550100"
EMAIL = "ann@example.com"
OWNER = "worker-1"


@dataclass
class StoredDelivery:
    """One delivery as the fake store holds it."""

    tenant_id: str
    to: str
    planned_at: datetime
    due_at: datetime
    state: DeliveryState = DeliveryState.SCHEDULED
    attempts: int = 0
    last_error: str | None = None
    provider_message_id: str | None = None
    sent_at: datetime | None = None
    lateness: timedelta | None = None
    lease_token: str | None = None
    lease_until: datetime | None = None


class FakeReminderStore:
    """Deliveries in a dictionary, claimed and settled as the real store does."""

    def __init__(self) -> None:
        self.deliveries: dict[tuple[str, int, str], StoredDelivery] = {}
        self.revisions: dict[str, int] = {}
        self.closed: set[str] = set()
        self.failures: dict[str, Exception] = {}
        self.swept = asyncio.Event()

    def add(self, due: Due, *, planned_at: datetime | None = None) -> Due:
        """Hold `due` as the task's current revision, as a new plan would."""
        self.revisions[due.task_id] = due.revision
        self.deliveries[due.key] = StoredDelivery(
            tenant_id="acme",
            to=PHONE if due.channel == "sms" else EMAIL,
            planned_at=planned_at or due.due_at,
            due_at=due.due_at,
        )
        return due

    def get(self, due: Due) -> StoredDelivery:
        return self.deliveries[due.key]

    def _fail_if_told(self, step: str) -> None:
        error = self.failures.pop(step, None)
        if error is not None:
            raise error

    async def pending(self, *, until: datetime, limit: int) -> list[Due]:
        self.swept.set()
        self._fail_if_told("pending")
        waiting = [
            Due(*key, due_at=stored.due_at)
            for key, stored in self.deliveries.items()
            if stored.state is DeliveryState.SCHEDULED and stored.due_at <= until
        ]
        return sorted(waiting, key=lambda d: d.due_at)[:limit]

    async def claim(
        self, due: Due, *, now: datetime, lease_until: datetime, owner: str
    ) -> Claim | NotYet | None:
        self._fail_if_told("claim")
        stored = self.deliveries.get(due.key)
        if (
            stored is None
            or stored.state is not DeliveryState.SCHEDULED
            or stored.lease_token is not None
            or self.revisions.get(due.task_id) != due.revision
            or due.task_id in self.closed
        ):
            return None
        if stored.due_at > now:
            return NotYet(replace(due, due_at=stored.due_at))

        stored.lease_token, stored.lease_until = f"{owner}-{now}", lease_until
        task = {"title": "Dentist", "taskDate": "2026-06-01", "timeOfDay": "15:00"}
        subject, body = reminders.message(task, due.channel)

        return Claim(
            due=replace(due, due_at=stored.due_at),
            planned_at=stored.planned_at,
            attempts=stored.attempts,
            message=Message(
                channel=due.channel,
                to=stored.to,
                subject=subject,
                body=body,
                tenant_id=stored.tenant_id,
                task_id=due.task_id,
            ),
            claimed_at=now,
            token=stored.lease_token,
        )

    async def settle(self, claim: Claim, settlement: Settlement) -> None:
        stored = self.deliveries[claim.due.key]
        if stored.lease_token != claim.token:
            return

        stored.attempts += 1 if settlement.attempted else 0
        stored.last_error = settlement.error
        stored.lease_token = stored.lease_until = None
        if settlement.result is Result.SENT:
            stored.state = DeliveryState.SENT
            stored.provider_message_id = settlement.provider_message_id
            stored.sent_at = settlement.at
            stored.lateness = settlement.lateness
        elif settlement.result is Result.RETRY:
            assert settlement.next_due_at is not None
            stored.state = DeliveryState.SCHEDULED
            stored.due_at = settlement.next_due_at
        else:
            stored.state = DeliveryState.FAILED

    async def expire_leases(self, *, now: datetime, error: str) -> int:
        expired = [
            stored
            for stored in self.deliveries.values()
            if stored.lease_until is not None and stored.lease_until < now
        ]
        for stored in expired:
            stored.state = DeliveryState.FAILED
            stored.last_error = error
            stored.lease_token = stored.lease_until = None

        return len(expired)


@dataclass(frozen=True)
class Pause:
    """A provider call that takes `seconds` before it answers."""

    seconds: float


class FakeSender:
    """A provider answering from a script: a message id, an error, or a pause."""

    def __init__(self, *script: str | DeliveryError | Pause) -> None:
        self.script = list(script)
        self.messages: list[Message] = []
        self.called = asyncio.Event()

    async def send(self, message: Message) -> str:
        self.messages.append(message)
        self.called.set()
        step = self.script.pop(0) if self.script else f"msg-{len(self.messages)}"
        if isinstance(step, DeliveryError):
            raise step
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return f"msg-{len(self.messages)}"

        return step


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, span: timedelta) -> None:
        self.now += span


def an_engine(
    store: FakeReminderStore,
    senders: dict[str, FakeSender],
    *,
    clock: Callable[[], datetime] = delivery.utc_now,
    report: Callable[[Outcome], None] | None = None,
    **settings: Any,
) -> ReminderEngine:
    return ReminderEngine(
        store,
        senders,
        owner=OWNER,
        settings=EngineSettings(**settings),
        clock=clock,
        report=report,
    )


def a_due(
    at: datetime, *, task: str = "task-1", revision: int = 1, channel: str = "sms"
) -> Due:
    return Due(task_id=task, revision=revision, channel=channel, due_at=at)


def an_event(
    kind: EventType,
    *dues: Due,
    version: int = 1,
    revision: int | None = 1,
    task: str = "task-1",
) -> TaskEvent:
    return TaskEvent(
        id=f"evt-{task}-{version}",
        type=kind,
        task_id=task,
        tenant_id="acme",
        user_id="ann",
        version=version,
        occurred_at=datetime(2026, 6, 1, 11, 0, tzinfo=UTC),
        reminder_revision=revision,
        deliveries=dues,
    )


class Reported:
    """A report callback that keeps each outcome and wakes whoever waits for one."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []
        self.arrived = asyncio.Event()

    def __call__(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.arrived.set()


async def soon(event: asyncio.Event) -> None:
    """Wait for `event`; the test fails if it has not happened within two seconds."""
    await asyncio.wait_for(event.wait(), timeout=2)


@contextlib.asynccontextmanager
async def running(engine: ReminderEngine) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(engine.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=2)


# dispatch


async def test_a_due_delivery_is_sent_and_settled_with_its_lateness(
    now: datetime,
) -> None:
    store, sender, clock = FakeReminderStore(), FakeSender("SM1"), FakeClock(now)
    due = store.add(a_due(now))
    engine = an_engine(store, {"sms": sender}, clock=clock)
    clock.advance(timedelta(seconds=2))

    outcome = await engine.dispatch(due)

    assert outcome is not None
    assert outcome.settlement.result is Result.SENT
    assert outcome.settlement.provider_message_id == "SM1"
    assert outcome.settlement.lateness == timedelta(seconds=2)
    assert outcome.tenant_id == "acme"
    assert [(m.to, m.body) for m in sender.messages] == [
        (PHONE, "Reminder: Dentist, 2026-06-01 at 15:00 (UTC)")
    ]
    stored = store.get(due)
    assert (stored.state, stored.attempts, stored.provider_message_id) == (
        DeliveryState.SENT,
        1,
        "SM1",
    )
    assert stored.sent_at == now + timedelta(seconds=2)
    assert stored.lease_token is None


async def test_a_delivery_is_sent_only_once_when_dispatched_twice(
    now: datetime,
) -> None:
    store, sender = FakeReminderStore(), FakeSender()
    due = store.add(a_due(now))
    engine = an_engine(store, {"sms": sender}, clock=FakeClock(now))

    first = await engine.dispatch(due)
    second = await engine.dispatch(due)

    assert first is not None
    assert first.settlement.result is Result.SENT
    assert second is None
    assert len(sender.messages) == 1


async def test_a_delivery_of_a_superseded_revision_is_not_sent(now: datetime) -> None:
    store, sender = FakeReminderStore(), FakeSender()
    old = store.add(a_due(now, revision=1))
    store.add(a_due(now + timedelta(hours=1), revision=2))
    engine = an_engine(store, {"sms": sender}, clock=FakeClock(now))

    outcome = await engine.dispatch(old)

    assert outcome is None
    assert sender.messages == []


async def retry_when_due(
    engine: ReminderEngine, clock: FakeClock, outcome: Outcome | None
) -> Outcome | None:
    """Move the clock to the retry's time and dispatch what falls due then."""
    assert outcome is not None
    assert outcome.settlement.next_due_at is not None
    clock.now = outcome.settlement.next_due_at
    [due] = engine.queue.pop_due(clock())

    return await engine.dispatch(due)


async def test_a_delivery_of_a_closed_task_is_not_sent(now: datetime) -> None:
    store, sender = FakeReminderStore(), FakeSender()
    due = store.add(a_due(now))
    store.closed.add(due.task_id)
    engine = an_engine(store, {"sms": sender}, clock=FakeClock(now))

    outcome = await engine.dispatch(due)

    assert outcome is None
    assert sender.messages == []
    assert store.get(due).state is DeliveryState.SCHEDULED


async def test_a_transient_failure_is_retried_after_a_backoff(now: datetime) -> None:
    store, clock = FakeReminderStore(), FakeClock(now)
    sender = FakeSender(TransientDelivery("provider busy (503)"), "SM2")
    due = store.add(a_due(now))
    engine = an_engine(store, {"sms": sender}, clock=clock)

    retry = await engine.dispatch(due)

    assert retry is not None
    settlement = retry.settlement
    assert (settlement.result, settlement.error) == (
        Result.RETRY,
        "provider busy (503)",
    )
    assert settlement.next_due_at is not None
    assert now + timedelta(seconds=0.5) <= settlement.next_due_at
    assert settlement.next_due_at <= now + timedelta(seconds=1)
    assert store.get(due).state is DeliveryState.SCHEDULED
    assert store.get(due).due_at == settlement.next_due_at
    assert engine.queue.next_due() == settlement.next_due_at


async def test_a_deferred_delivery_waits_without_spending_an_attempt(
    now: datetime,
) -> None:
    store, clock = FakeReminderStore(), FakeClock(now)
    held = DeferredDelivery("channel suspended", retry_after=timedelta(seconds=30))
    sender = FakeSender(*(held for _ in range(8)), "SM9")
    due = store.add(a_due(now))
    engine = an_engine(store, {"sms": sender}, clock=clock)

    outcome = await engine.dispatch(due)
    for _ in range(8):
        assert outcome is not None
        outcome = await retry_when_due(engine, clock, outcome)

    assert outcome is not None
    assert outcome.settlement.result is Result.SENT
    assert (store.get(due).state, store.get(due).attempts) == (DeliveryState.SENT, 1)
    assert clock.now == now + timedelta(seconds=8 * 30)


async def test_a_delivery_deferred_past_the_lateness_limit_is_missed(
    now: datetime,
) -> None:
    store, clock = FakeReminderStore(), FakeClock(now)
    held = DeferredDelivery("channel suspended", retry_after=timedelta(minutes=40))
    sender = FakeSender(held, "SM2")
    due = store.add(a_due(now))
    engine = an_engine(
        store,
        {"sms": sender},
        clock=clock,
        lateness=scheduling.LatenessPolicy(max_lateness=timedelta(minutes=30)),
    )
    deferred = await engine.dispatch(due)
    assert deferred is not None
    assert (deferred.settlement.result, deferred.settlement.attempted) == (
        Result.RETRY,
        False,
    )

    missed = await retry_when_due(engine, clock, deferred)

    assert missed is not None
    assert missed.settlement.result is Result.FAILED
    assert "missed" in (missed.settlement.error or "")
    assert len(sender.messages) == 1


async def test_a_retried_delivery_goes_out_at_its_new_time(now: datetime) -> None:
    store, clock = FakeReminderStore(), FakeClock(now)
    sender = FakeSender(TransientDelivery("provider busy (503)"), "SM2")
    due = store.add(a_due(now))
    engine = an_engine(store, {"sms": sender}, clock=clock)
    retry = await engine.dispatch(due)

    sent = await retry_when_due(engine, clock, retry)

    assert sent is not None
    assert sent.settlement.result is Result.SENT
    assert sent.settlement.lateness == clock.now - now
    assert (store.get(due).state, store.get(due).attempts) == (DeliveryState.SENT, 2)
    assert store.get(due).provider_message_id == "SM2"
    assert len(sender.messages) == 2


async def test_retries_end_in_failure_at_the_last_attempt(now: datetime) -> None:
    store, clock = FakeReminderStore(), FakeClock(now)
    sender = FakeSender(*(TransientDelivery("provider busy") for _ in range(3)))
    due = store.add(a_due(now))
    engine = an_engine(
        store,
        {"sms": sender},
        clock=clock,
        retry=scheduling.RetryPolicy(max_attempts=3),
    )

    first = await engine.dispatch(due)
    second = await retry_when_due(engine, clock, first)
    third = await retry_when_due(engine, clock, second)

    assert third is not None
    assert [o.attempts for o in (first, second, third) if o] == [1, 2, 3]
    assert third.settlement.result is Result.FAILED
    assert third.settlement.error == "provider busy (gave up after 3 attempts)"
    assert third.settlement.next_due_at is None
    assert len(sender.messages) == 3
    assert (store.get(due).state, store.get(due).attempts) == (DeliveryState.FAILED, 3)
    assert len(engine.queue) == 0


async def test_a_permanent_failure_fails_the_delivery_at_once(now: datetime) -> None:
    store = FakeReminderStore()
    sender = FakeSender(PermanentDelivery("not a mobile number"))
    due = store.add(a_due(now))
    engine = an_engine(store, {"sms": sender}, clock=FakeClock(now))

    outcome = await engine.dispatch(due)

    assert outcome is not None
    assert (outcome.settlement.result, outcome.settlement.error) == (
        Result.FAILED,
        "not a mobile number",
    )
    assert (store.get(due).state, store.get(due).attempts) == (DeliveryState.FAILED, 1)
    assert store.get(due).last_error == "not a mobile number"
    assert len(sender.messages) == 1
    assert len(engine.queue) == 0


async def test_a_delivery_far_past_its_time_is_missed_without_a_send(
    now: datetime,
) -> None:
    store, sender = FakeReminderStore(), FakeSender()
    due = store.add(a_due(now - timedelta(hours=7)))
    engine = an_engine(store, {"sms": sender}, clock=FakeClock(now))

    outcome = await engine.dispatch(due)

    assert outcome is not None
    assert outcome.settlement.result is Result.FAILED
    assert (outcome.settlement.attempted, outcome.attempts) == (False, 0)
    assert (
        outcome.settlement.error == "missed: due 420 min ago, past the limit of 360 min"
    )
    assert sender.messages == []
    assert (store.get(due).state, store.get(due).attempts) == (DeliveryState.FAILED, 0)


async def test_a_channel_without_a_provider_fails(now: datetime) -> None:
    store, sms = FakeReminderStore(), FakeSender()
    due = store.add(a_due(now, channel="email"))
    engine = an_engine(store, {"sms": sms}, clock=FakeClock(now))

    outcome = await engine.dispatch(due)

    assert outcome is not None
    assert (outcome.settlement.result, outcome.settlement.error) == (
        Result.FAILED,
        "no provider configured for email",
    )
    assert store.get(due).state is DeliveryState.FAILED
    assert sms.messages == []


async def test_a_provider_that_does_not_answer_in_time_is_retried(
    now: datetime,
) -> None:
    store, sender = FakeReminderStore(), FakeSender(Pause(1.0))
    due = store.add(a_due(now))
    engine = an_engine(
        store,
        {"sms": sender},
        clock=FakeClock(now),
        send_timeout=timedelta(milliseconds=20),
    )

    outcome = await engine.dispatch(due)

    assert outcome is not None
    assert (outcome.settlement.result, outcome.settlement.error) == (
        Result.RETRY,
        "timed out after 0.02s",
    )
    assert store.get(due).state is DeliveryState.SCHEDULED


async def test_the_report_gets_each_outcome_of_a_dispatch(now: datetime) -> None:
    store = FakeReminderStore()
    sent, refused = store.add(a_due(now)), store.add(a_due(now, task="task-2"))
    sender = FakeSender("SM1", PermanentDelivery("blocked"))
    reported: list[Outcome] = []
    engine = an_engine(
        store, {"sms": sender}, clock=FakeClock(now), report=reported.append
    )

    first = await engine.dispatch(sent)
    second = await engine.dispatch(refused)
    not_claimed = await engine.dispatch(sent)

    assert not_claimed is None
    assert reported == [first, second]
    assert [o.settlement.result for o in reported] == [Result.SENT, Result.FAILED]


# accept


def test_an_older_version_of_a_task_is_ignored_after_a_newer_one(now: datetime) -> None:
    engine = an_engine(FakeReminderStore(), {}, clock=FakeClock(now))
    newer = a_due(now + timedelta(minutes=5), revision=2)
    older = a_due(now + timedelta(minutes=1), revision=1)

    engine.accept(an_event(EventType.UPDATED, newer, version=3, revision=2))
    engine.accept(an_event(EventType.UPDATED, older, version=2, revision=1))

    assert engine.queue.pop_due(now + timedelta(hours=1)) == [newer]


@pytest.mark.parametrize("closing", [EventType.COMPLETED, EventType.DELETED])
def test_a_closed_task_leaves_the_queue(closing: EventType, now: datetime) -> None:
    engine = an_engine(FakeReminderStore(), {}, clock=FakeClock(now))
    engine.accept(an_event(EventType.CREATED, a_due(now + timedelta(minutes=1))))
    other = a_due(now + timedelta(minutes=2), task="task-2")
    engine.accept(an_event(EventType.CREATED, other, task="task-2"))

    engine.accept(an_event(closing, version=2))

    assert engine.queue.pop_due(now + timedelta(hours=1)) == [other]


def test_a_new_revision_replaces_the_old_one_in_the_queue(now: datetime) -> None:
    engine = an_engine(FakeReminderStore(), {}, clock=FakeClock(now))
    engine.accept(
        an_event(
            EventType.CREATED,
            a_due(now + timedelta(minutes=1)),
            a_due(now + timedelta(minutes=1), channel="email"),
        )
    )
    moved = a_due(now + timedelta(minutes=3), revision=2)

    engine.accept(an_event(EventType.UPDATED, moved, version=2, revision=2))

    assert engine.queue.pop_due(now + timedelta(hours=1)) == [moved]


def test_a_reminder_removed_from_a_task_leaves_the_queue(now: datetime) -> None:
    engine = an_engine(FakeReminderStore(), {}, clock=FakeClock(now))
    engine.accept(an_event(EventType.CREATED, a_due(now + timedelta(minutes=1))))

    engine.accept(an_event(EventType.UPDATED, version=2, revision=None))

    assert len(engine.queue) == 0


def test_deliveries_beyond_the_horizon_are_left_to_a_later_sweep(now: datetime) -> None:
    engine = an_engine(
        FakeReminderStore(), {}, clock=FakeClock(now), horizon=timedelta(minutes=10)
    )
    soon = a_due(now + timedelta(minutes=10))
    later = a_due(now + timedelta(minutes=11), channel="email")

    engine.accept(an_event(EventType.CREATED, soon, later))

    assert engine.queue.pop_due(now + timedelta(days=1)) == [soon]


def test_versions_are_remembered_for_the_most_recent_hundred_thousand_tasks(
    now: datetime,
) -> None:
    engine = an_engine(FakeReminderStore(), {}, clock=FakeClock(now))
    engine.accept(an_event(EventType.UPDATED, version=5, task="first"))
    for n in range(100_000):
        engine.accept(an_event(EventType.UPDATED, version=5, task=f"task-{n}"))
    forgotten = a_due(now, task="first")
    remembered = a_due(now, task="task-99999")

    engine.accept(an_event(EventType.UPDATED, forgotten, version=4, task="first"))
    engine.accept(an_event(EventType.UPDATED, remembered, version=4, task="task-99999"))

    assert engine.queue.pop_due(now) == [forgotten]


# sweep


async def test_a_sweep_queues_what_the_store_has_due_within_the_horizon(
    now: datetime,
) -> None:
    store = FakeReminderStore()
    late = store.add(a_due(now - timedelta(minutes=3), task="task-1"))
    soon = store.add(a_due(now + timedelta(minutes=9), task="task-2"))
    store.add(a_due(now + timedelta(minutes=11), task="task-3"))
    engine = an_engine(store, {}, clock=FakeClock(now), horizon=timedelta(minutes=10))

    await engine.sweep()

    assert engine.queue.pop_due(now + timedelta(days=1)) == [late, soon]


class SlowStore(FakeReminderStore):
    """A store whose sweep reads answer only when the test lets them."""

    def __init__(self) -> None:
        super().__init__()
        self.answer = asyncio.Event()

    async def pending(self, *, until: datetime, limit: int) -> list[Due]:
        found = await super().pending(until=until, limit=limit)
        await self.answer.wait()
        return found


@pytest.mark.parametrize("store_moves", ["earlier", "later"])
async def test_a_sweep_keeps_the_earlier_of_its_time_and_the_engines(
    now: datetime, store_moves: str
) -> None:
    store = FakeReminderStore()
    held = a_due(now + timedelta(minutes=3))
    stored = store.add(
        a_due(now + timedelta(minutes=1 if store_moves == "earlier" else 5))
    )
    engine = an_engine(store, {}, clock=FakeClock(now))
    engine.accept(an_event(EventType.CREATED, held))

    await engine.sweep()

    earlier = min(held, stored, key=lambda d: d.due_at)
    assert engine.queue.pop_due(now + timedelta(days=1)) == [earlier]


async def test_a_sweep_leaves_what_was_dispatched_while_it_ran_to_the_dispatch(
    now: datetime,
) -> None:
    store, sender = SlowStore(), FakeSender()
    due = store.add(a_due(now - timedelta(seconds=1)))
    engine = an_engine(store, {"sms": sender}, clock=FakeClock(now))
    sweep = asyncio.create_task(engine.sweep())
    await soon(store.swept)

    # The sweep has read the delivery as scheduled; it goes out before the
    # sweep's answer arrives.
    await engine.dispatch(due)
    store.answer.set()
    await sweep

    assert store.get(due).state is DeliveryState.SENT
    assert len(engine.queue) == 0


async def test_a_delivery_taken_too_early_waits_for_the_time_the_store_has(
    now: datetime,
) -> None:
    store, sender = FakeReminderStore(), FakeSender()
    retry_at = store.add(a_due(now + timedelta(seconds=30)))
    engine = an_engine(store, {"sms": sender}, clock=FakeClock(now))

    # An event older than the retry the store has since scheduled.
    outcome = await engine.dispatch(replace(retry_at, due_at=now))

    assert outcome is None
    assert sender.messages == []
    assert engine.queue.next_due() == retry_at.due_at


async def test_a_sweep_that_ends_cancelled_on_its_own_does_not_end_sweeping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FakeReminderStore()
    store.failures["pending"] = asyncio.CancelledError()
    engine = an_engine(store, {}, sweep_every=timedelta(milliseconds=20))
    swept_again = asyncio.Event()

    async with running(engine):
        await soon(store.swept)
        store.swept.clear()
        await soon(store.swept)
        swept_again.set()

    assert swept_again.is_set()
    assert "sweep cancelled" in [r.getMessage() for r in caplog.records]


async def test_a_sweep_fails_sends_whose_worker_died_and_warns(
    now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeReminderStore()
    abandoned = store.add(a_due(now - timedelta(minutes=5)))
    stored = store.get(abandoned)
    stored.lease_token = "worker-gone"
    stored.lease_until = now - timedelta(minutes=4)
    engine = an_engine(store, {}, clock=FakeClock(now))

    with caplog.at_level(logging.WARNING, logger="tm_domain.delivery"):
        await engine.sweep()

    assert stored.state is DeliveryState.FAILED
    assert stored.last_error == delivery.UNKNOWN_OUTCOME
    [record] = caplog.records
    assert (record.levelno, record.getMessage()) == (
        logging.WARNING,
        "delivery outcome unknown",
    )
    assert record.count == 1
    assert len(engine.queue) == 0


async def test_a_sweep_leaves_a_send_under_its_lease_alone(
    now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeReminderStore()
    sending = store.get(store.add(a_due(now)))
    sending.lease_token, sending.lease_until = "worker-2", now + timedelta(seconds=30)
    engine = an_engine(store, {}, clock=FakeClock(now))

    with caplog.at_level(logging.WARNING, logger="tm_domain.delivery"):
        await engine.sweep()

    assert (sending.state, sending.lease_token) == (
        DeliveryState.SCHEDULED,
        "worker-2",
    )
    assert caplog.records == []


# run, on real time


async def test_the_engine_sends_a_stored_delivery_when_it_falls_due() -> None:
    store, sender = FakeReminderStore(), FakeSender("SM1")
    due = store.add(a_due(delivery.utc_now() + timedelta(milliseconds=50)))
    reported = Reported()
    engine = an_engine(store, {"sms": sender}, report=reported)

    async with running(engine) as task:
        await soon(reported.arrived)
        await asyncio.sleep(0.05)

    assert task.cancelled()
    assert len(sender.messages) == 1
    [outcome] = reported.outcomes
    assert outcome.settlement.result is Result.SENT
    assert outcome.settlement.lateness is not None
    assert outcome.settlement.lateness < timedelta(seconds=1)
    assert store.get(due).state is DeliveryState.SENT


@pytest.mark.parametrize("sweep", ["answered", "still reading"])
async def test_an_event_wakes_the_engine_for_a_delivery_due_soon(sweep: str) -> None:
    store = FakeReminderStore() if sweep == "answered" else SlowStore()
    sender = FakeSender()
    reported = Reported()
    engine = an_engine(store, {"sms": sender}, report=reported)

    async with running(engine):
        # After its first sweep the engine sleeps until the next one, 15 s
        # away; a sweep still reading the store holds nothing up either.
        await soon(store.swept)
        due = store.add(a_due(delivery.utc_now() + timedelta(milliseconds=50)))
        engine.accept(an_event(EventType.CREATED, due))
        await soon(reported.arrived)

    assert [o.due for o in reported.outcomes] == [due]
    assert store.get(due).state is DeliveryState.SENT


async def test_stopping_the_engine_lets_a_send_under_way_finish() -> None:
    store, sender = FakeReminderStore(), FakeSender(Pause(0.1))
    due = store.add(a_due(delivery.utc_now()))
    engine = an_engine(store, {"sms": sender})

    async with running(engine):
        await soon(sender.called)

    assert store.get(due).state is DeliveryState.SENT
    assert store.get(due).lease_token is None


class StalledStore(FakeReminderStore):
    """A store whose reads never answer, like one behind a network partition."""

    async def pending(self, *, until: datetime, limit: int) -> list[Due]:
        self.swept.set()
        await asyncio.Event().wait()
        return []


async def test_stopping_the_engine_during_a_sweep_is_not_a_failed_sweep(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = StalledStore()
    engine = an_engine(store, {})
    task = asyncio.create_task(engine.run())
    await soon(store.swept)

    task.cancel()
    await asyncio.wait({task}, timeout=2)

    assert task.cancelled()
    assert caplog.records == []


async def test_an_engine_run_again_after_a_stop_sweeps_again_and_again() -> None:
    store = FakeReminderStore()
    engine = an_engine(store, {}, sweep_every=timedelta(milliseconds=20))
    async with running(engine):
        await soon(store.swept)

    async with running(engine):
        for _ in range(2):
            store.swept.clear()
            await soon(store.swept)


async def test_a_failed_sweep_does_not_stop_what_events_scheduled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, sender = FakeReminderStore(), FakeSender()
    store.failures["pending"] = ConnectionError("store down")
    engine = an_engine(store, {"sms": sender})

    async with running(engine):
        await soon(store.swept)
        due = store.add(a_due(delivery.utc_now() + timedelta(milliseconds=20)))
        engine.accept(an_event(EventType.CREATED, due))
        await soon(sender.called)

    assert "sweep failed" in [r.getMessage() for r in caplog.records]
    assert store.get(due).state is DeliveryState.SENT


async def test_a_store_failure_during_a_dispatch_is_logged_and_sending_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, sender = FakeReminderStore(), FakeSender()
    store.failures["claim"] = ConnectionError("store down")
    start = delivery.utc_now()
    unlucky = store.add(a_due(start, task="task-1"))
    lucky = store.add(a_due(start + timedelta(milliseconds=30), task="task-2"))
    engine = an_engine(store, {"sms": sender})

    async with running(engine):
        await soon(sender.called)

    [failure] = [r for r in caplog.records if r.getMessage() == "dispatch failed"]
    assert failure.task_id == "task-1"
    assert store.get(unlucky).state is DeliveryState.SCHEDULED
    assert store.get(lucky).state is DeliveryState.SENT
    assert [m.task_id for m in sender.messages] == ["task-2"]
