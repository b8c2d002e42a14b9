"""The reminder store's contract, on MongoDB wire and on SQLite: claims, settlements,
leases. Every test runs against both stores (`tests/support/stores.py`)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.documents import EMAIL, PHONE, task_document
from tests.support.stores import Backend
from tm_domain.delivery import Claim, NotYet, Result, Settlement
from tm_domain.events import Due

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)


def due_of(doc: dict, channel: str) -> Due:
    delivery = doc["reminder"]["deliveries"][channel]
    return Due(str(doc["_id"]), doc["reminder"]["revision"], channel, delivery["dueAt"])


async def claimed(
    backend: Backend, *, send_at: datetime, channel: str
) -> tuple[dict, Claim]:
    """A stored task whose one delivery `worker-a` has just claimed."""
    doc = task_document(send_at=send_at, channels=[channel])
    await backend.put(doc)
    claim = await backend.reminders.claim(
        due_of(doc, channel), now=NOW, lease_until=NOW, owner="worker-a"
    )
    assert claim is not None

    return doc, claim


async def test_pending_lists_each_due_channel_of_open_tasks_earliest_first(
    backend: Backend,
) -> None:
    later = task_document(send_at=NOW - timedelta(seconds=10))
    earlier = task_document(send_at=NOW - timedelta(seconds=20), channels=["email"])
    future = task_document(send_at=NOW + timedelta(hours=2))
    completed = {**task_document(send_at=NOW), "completed": True}
    deleted = {**task_document(send_at=NOW), "deletedAt": NOW}
    await backend.put(later, earlier, future, completed, deleted)

    found = await backend.reminders.pending(
        until=NOW + timedelta(minutes=10), limit=100
    )

    assert [(d.task_id, d.channel) for d in found] == [
        (str(earlier["_id"]), "email"),
        (str(later["_id"]), "sms"),
        (str(later["_id"]), "email"),
    ]
    assert all(d.due_at.tzinfo is not None for d in found)
    assert {d.revision for d in found} == {1}


async def test_pending_skips_deliveries_no_longer_scheduled(
    backend: Backend,
) -> None:
    doc = task_document(send_at=NOW - timedelta(seconds=5))
    doc["reminder"]["deliveries"]["sms"]["state"] = "sent"
    await backend.put(doc)

    found = await backend.reminders.pending(until=NOW, limit=100)

    assert [d.channel for d in found] == ["email"]


async def test_claim_takes_a_lease_and_builds_its_message(
    backend: Backend,
) -> None:
    doc = task_document(send_at=NOW - timedelta(seconds=1))
    await backend.put(doc)
    lease_until = NOW + timedelta(minutes=1)

    sms = await backend.reminders.claim(
        due_of(doc, "sms"), now=NOW, lease_until=lease_until, owner="worker-a"
    )
    email = await backend.reminders.claim(
        due_of(doc, "email"), now=NOW, lease_until=lease_until, owner="worker-a"
    )

    assert sms is not None and email is not None
    assert sms.message.to == PHONE
    assert sms.message.body.startswith("Reminder: Water the plants")
    assert email.message.to == EMAIL
    assert email.message.subject == "Reminder: Water the plants"
    assert "The ferns first" in email.message.body
    assert sms.planned_at == doc["reminder"]["sendAt"]
    assert sms.attempts == 0
    assert sms.message.tenant_id == "tenant-a"
    assert sms.claimed_at == NOW and sms.token != email.token
    [lease] = [c for c in await backend.claims() if c["_id"] == f"{doc['_id']}:1:sms"]
    assert (lease["owner"], lease["leaseUntil"]) == ("worker-a", lease_until)
    assert PHONE not in repr(lease)
    # The task document is not written: the claim is the lease.
    assert await backend.stored(doc["_id"]) == doc


async def test_a_delivery_can_be_claimed_once(
    backend: Backend,
) -> None:
    doc = task_document(send_at=NOW - timedelta(seconds=1), channels=["sms"])
    await backend.put(doc)
    lease = NOW + timedelta(minutes=1)

    first = await backend.reminders.claim(
        due_of(doc, "sms"), now=NOW, lease_until=lease, owner="worker-a"
    )
    second = await backend.reminders.claim(
        due_of(doc, "sms"), now=NOW, lease_until=lease, owner="worker-b"
    )

    assert first is not None
    assert second is None


@pytest.mark.parametrize(
    "change",
    [
        {"completed": True},
        {"deletedAt": NOW},
        {"reminder.enabled": False},
        {"reminder.revision": 2},
        {"reminder.deliveries.sms.state": "cancelled"},
    ],
    ids=["completed", "deleted", "disabled", "revised", "cancelled"],
)
async def test_claim_refuses_a_delivery_that_may_no_longer_go_out(
    backend: Backend, change: dict
) -> None:
    doc = task_document(send_at=NOW - timedelta(seconds=1), channels=["sms"])
    await backend.put(doc)
    await backend.change(doc["_id"], change)

    claim = await backend.reminders.claim(
        due_of(doc, "sms"), now=NOW, lease_until=NOW, owner="worker-a"
    )

    assert claim is None
    assert len(await backend.claims()) == 0


async def test_claim_refuses_a_delivery_before_its_time_and_tells_it(
    backend: Backend,
) -> None:
    doc = task_document(send_at=NOW + timedelta(seconds=30), channels=["sms"])
    await backend.put(doc)
    due = due_of(doc, "sms")

    claim = await backend.reminders.claim(
        replace(due, due_at=NOW), now=NOW, lease_until=NOW, owner="worker-a"
    )

    assert claim == NotYet(replace(due, due_at=NOW + timedelta(seconds=30)))


async def test_settle_sent_records_the_provider_id_and_lateness_without_recipient(
    backend: Backend,
) -> None:
    doc, claim = await claimed(
        backend, send_at=NOW - timedelta(seconds=2), channel="sms"
    )

    await backend.reminders.settle(
        claim,
        Settlement(
            Result.SENT,
            at=NOW,
            attempted=True,
            provider_message_id="SM123",
            lateness=timedelta(milliseconds=2040),
        ),
    )

    stored = await backend.stored(doc["_id"])
    delivery = stored["reminder"]["deliveries"]["sms"]
    assert delivery["state"] == "sent"
    assert delivery["sentAt"] == NOW
    assert delivery["providerMessageId"] == "SM123"
    assert delivery["latenessMs"] == 2040
    assert delivery["attempts"] == 1
    assert stored["writeSeq"] == 2
    assert len(await backend.claims()) == 0
    history = await backend.reminders.history(
        tenant_id="tenant-a", user_id="user-1", task_id=str(doc["_id"])
    )
    assert len(history) == 1
    assert history[0]["result"] == "sent"
    assert history[0]["attempt"] == 1
    assert history[0]["channel"] == "sms"
    assert history[0]["revision"] == 1
    assert history[0]["latenessMs"] == 2040
    assert history[0]["providerMessageId"] == "SM123"
    assert PHONE not in repr(history) and EMAIL not in repr(history)


async def test_settle_retry_schedules_the_delivery_again(
    backend: Backend,
) -> None:
    doc, claim = await claimed(
        backend, send_at=NOW - timedelta(seconds=2), channel="email"
    )
    next_due = NOW + timedelta(seconds=3)

    await backend.reminders.settle(
        claim,
        Settlement(
            Result.RETRY,
            at=NOW,
            attempted=True,
            error="sendgrid HTTP 503",
            next_due_at=next_due,
        ),
    )

    stored = await backend.stored(doc["_id"])
    delivery = stored["reminder"]["deliveries"]["email"]
    assert delivery["state"] == "scheduled"
    assert delivery["dueAt"] == next_due
    assert delivery["lastError"] == "sendgrid HTTP 503"
    assert delivery["attempts"] == 1
    found = await backend.reminders.pending(until=next_due, limit=10)
    assert [(d.channel, d.due_at) for d in found] == [("email", next_due)]


async def test_settle_failed_without_an_attempt_keeps_the_count(
    backend: Backend,
) -> None:
    doc, claim = await claimed(backend, send_at=NOW - timedelta(hours=7), channel="sms")

    await backend.reminders.settle(
        claim,
        Settlement(Result.FAILED, at=NOW, attempted=False, error="missed"),
    )

    stored = await backend.stored(doc["_id"])
    delivery = stored["reminder"]["deliveries"]["sms"]
    assert (delivery["state"], delivery["attempts"]) == ("failed", 0)
    assert delivery["lastError"] == "missed"


async def test_a_settlement_after_the_lease_was_taken_over_changes_nothing(
    backend: Backend,
) -> None:
    doc = task_document(send_at=NOW - timedelta(minutes=5), channels=["sms"])
    await backend.put(doc)
    claim = await backend.reminders.claim(
        due_of(doc, "sms"),
        now=NOW - timedelta(minutes=3),
        lease_until=NOW - timedelta(minutes=2),
        owner="slow-worker",
    )
    assert claim is not None
    assert await backend.reminders.expire_leases(now=NOW, error="outcome unknown") == 1

    await backend.reminders.settle(
        claim,
        Settlement(Result.SENT, at=NOW, attempted=True, provider_message_id="SM1"),
    )

    stored = await backend.stored(doc["_id"])
    delivery = stored["reminder"]["deliveries"]["sms"]
    assert (delivery["state"], delivery["attempts"]) == ("failed", 1)
    assert delivery["lastError"] == "outcome unknown"
    # The late attempt is history all the same.
    history = await backend.reminders.history(
        tenant_id="tenant-a", user_id="user-1", task_id=str(doc["_id"])
    )
    assert [h["result"] for h in history] == ["unknown", "sent"]


async def test_a_claim_can_be_taken_again_once_settled_and_reads_the_settlement(
    backend: Backend,
) -> None:
    _, claim = await claimed(backend, send_at=NOW - timedelta(seconds=2), channel="sms")
    await backend.reminders.settle(
        claim,
        Settlement(
            Result.RETRY,
            at=NOW,
            attempted=True,
            error="twilio HTTP 503",
            next_due_at=NOW + timedelta(seconds=4),
        ),
    )

    early = await backend.reminders.claim(
        claim.due, now=NOW, lease_until=NOW + timedelta(minutes=1), owner="worker-b"
    )
    on_time = await backend.reminders.claim(
        claim.due,
        now=NOW + timedelta(seconds=4),
        lease_until=NOW + timedelta(minutes=1),
        owner="worker-b",
    )

    assert early == NotYet(replace(claim.due, due_at=NOW + timedelta(seconds=4)))
    assert isinstance(on_time, Claim) and on_time.attempts == 1


@pytest.mark.parametrize(
    ("result", "state", "attempts"),
    [(Result.SENT, "sent", 1), (Result.RETRY, "cancelled", 1)],
    ids=["sent", "retry"],
)
async def test_a_reminder_cancelled_during_its_send_stays_cancelled_unless_it_went_out(
    backend: Backend, result: Result, state: str, attempts: int
) -> None:
    doc, claim = await claimed(
        backend, send_at=NOW - timedelta(seconds=2), channel="sms"
    )
    await backend.change(
        doc["_id"], {"completed": True, "reminder.deliveries.sms.state": "cancelled"}
    )

    await backend.reminders.settle(
        claim,
        Settlement(
            result,
            at=NOW,
            attempted=True,
            provider_message_id="SM9" if result is Result.SENT else None,
            error=None if result is Result.SENT else "twilio HTTP 503",
            next_due_at=None if result is Result.SENT else NOW + timedelta(seconds=3),
        ),
    )

    stored = await backend.stored(doc["_id"])
    delivery = stored["reminder"]["deliveries"]["sms"]
    assert (delivery["state"], delivery["attempts"]) == (state, attempts)
    assert len(await backend.claims()) == 0


async def test_expired_leases_fail_as_unknown_and_live_ones_stay(
    backend: Backend,
) -> None:
    stuck = task_document(send_at=NOW - timedelta(minutes=5), channels=["sms"])
    live = task_document(send_at=NOW - timedelta(minutes=5), channels=["email"])
    await backend.put(stuck, live)
    await backend.reminders.claim(
        due_of(stuck, "sms"),
        now=NOW - timedelta(minutes=3),
        lease_until=NOW - timedelta(minutes=2),
        owner="dead-worker",
    )
    await backend.reminders.claim(
        due_of(live, "email"),
        now=NOW,
        lease_until=NOW + timedelta(minutes=1),
        owner="live-worker",
    )

    count = await backend.reminders.expire_leases(now=NOW, error="outcome unknown")

    assert count == 1
    stuck_now = await backend.stored(stuck["_id"])
    delivery = stuck_now["reminder"]["deliveries"]["sms"]
    assert delivery["state"] == "failed"
    assert delivery["lastError"] == "outcome unknown"
    assert delivery["attempts"] == 1
    live_now = await backend.stored(live["_id"])
    assert live_now["reminder"]["deliveries"]["email"]["state"] == "scheduled"
    [left] = await backend.claims()
    assert left["owner"] == "live-worker"
    history = await backend.reminders.history(
        tenant_id="tenant-a", user_id="user-1", task_id=str(stuck["_id"])
    )
    assert [h["result"] for h in history] == ["unknown"]
    assert await backend.reminders.expire_leases(now=NOW, error="again") == 0


@pytest.mark.parametrize("workers", [8])
async def test_many_workers_claiming_one_delivery_at_once_yield_one_claim(
    backend: Backend, workers: int
) -> None:
    doc = task_document(send_at=NOW - timedelta(seconds=1))
    await backend.put(doc)
    stores = [await backend.other_worker() for _ in range(workers)]
    lease = NOW + timedelta(minutes=1)

    claims = await asyncio.gather(
        *(
            store.claim(due_of(doc, channel), now=NOW, lease_until=lease, owner=f"w{i}")
            for i, store in enumerate(stores)
            for channel in ("sms", "email")
        )
    )

    won = [c for c in claims if c is not None]
    assert sorted(c.due.channel for c in won) == ["email", "sms"]
    assert len(await backend.claims()) == 2
