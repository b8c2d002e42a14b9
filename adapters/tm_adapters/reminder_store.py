"""The reminder store on MongoDB: deliveries in the task documents, claims beside them.

`MongoReminderStore` implements `tm_domain.delivery.ReminderStore`. A
delivery's state lives in its task document in `visitor_time_tasks`, where the
API reads it. Who may send it lives in `reminder_claims`: a claim is the insert
of a document whose `_id` names the delivery (task, revision, channel), which
only one dispatch can make, whatever the worker. Holding it, the store reads
the task and goes on only while the task is open, the revision current and the
delivery scheduled and due. The holder settles the delivery in the task
document and only then deletes its claim, so whoever claims next reads the
settled state. A claim left past its lease means its worker died during the
send; `expire_leases` fails that delivery as unknown and removes the claim.

Every write to a task document is one conditional update, which MongoDB applies
atomically without a transaction. FerretDB 1.24 on SQLite does not keep that
promise on its own: it applies an update by reading the document, changing it
in memory and writing the whole of it back, so two concurrent writers can both
pass the same filter and the later silently undoes the earlier. Every such
write goes through `tm_adapters.mongo.update_where`, which on that server takes
the task's lock, the same one the API takes. A claim takes no lock: an insert
is atomic on both servers, and it is the cheapest write FerretDB makes.

Each settlement also leaves one document in `reminder_deliveries`, the history
of attempts that outlives a reschedule. Neither it nor a claim holds a phone
number or an e-mail address.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tm_adapters import mongo
from tm_domain import reminders
from tm_domain.delivery import (
    Claim,
    Message,
    NotYet,
    Result,
    Settlement,
    attempt_record,
    not_yet,
)
from tm_domain.events import Due
from tm_domain.reminders import Channel, DeliveryState

log = logging.getLogger(__name__)

Document = dict[str, Any]

TASKS = "visitor_time_tasks"
DELIVERIES = "reminder_deliveries"
CLAIMS = "reminder_claims"
CHANNELS = tuple(str(c) for c in Channel)


def _open_task() -> Document:
    """The filter of a task whose reminder may still go out."""
    return {"deletedAt": None, "completed": False, "reminder.enabled": True}


def _claim_id(due: Due) -> str:
    return f"{due.task_id}:{due.revision}:{due.channel}"


def _delivery(channel: str) -> str:
    return f"reminder.deliveries.{channel}"


def _task_key(task_id: str) -> Any:
    """The `_id` of a task id as events and the API show it: an ObjectId as text."""
    try:
        return ObjectId(task_id)
    except (InvalidId, TypeError):
        return task_id


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class MongoReminderStore:
    """Reminder deliveries in the task documents, with their attempt history."""

    def __init__(
        self, db: AsyncDatabase[Document], *, locks: mongo.Locks | None = None
    ) -> None:
        """`locks`: how writes to a task exclude each other; None: as needed."""
        self.db = db
        self.tasks = db[TASKS]
        self.deliveries = db[DELIVERIES]
        self.claims = db[CLAIMS]
        self._task_locks = locks
        self._indexed = False
        self._index_lock = asyncio.Lock()

    async def _locks(self) -> mongo.Locks:
        if self._task_locks is None:
            self._task_locks = await mongo.locks_for(self.db)
            if not self._task_locks.atomic:
                log.info("server updates are not atomic: task writes are locked")
        return self._task_locks

    async def ensure_indexes(self) -> None:
        """Create the history's index; harmless when it already exists."""
        async with self._index_lock:
            if self._indexed:
                return
            await self.deliveries.create_index(
                [("tenantId", ASCENDING), ("userId", ASCENDING), ("taskId", ASCENDING)],
                name="tenant_user_task",
            )
            self._indexed = True

    async def pending(self, *, until: datetime, limit: int) -> list[Due]:
        # One branch per channel, each served by its (state, dueAt) index.
        query = {
            **_open_task(),
            "$or": [
                {
                    f"{_delivery(ch)}.state": str(DeliveryState.SCHEDULED),
                    f"{_delivery(ch)}.dueAt": {"$lte": until},
                }
                for ch in CHANNELS
            ],
        }
        projection = {"reminder.revision": 1, "reminder.deliveries": 1}

        found: list[Due] = []
        # NB: in modest batches, so that decoding them never holds up the
        # sends that share this event loop for long.
        cursor = self.tasks.find(query, projection, limit=limit, batch_size=200)
        async for doc in cursor:
            reminder = doc["reminder"]
            for channel, delivery in (reminder.get("deliveries") or {}).items():
                due_at = delivery.get("dueAt")
                if (
                    delivery.get("state") == DeliveryState.SCHEDULED
                    and isinstance(due_at, datetime)
                    and _utc(due_at) <= until
                ):
                    found.append(
                        Due(
                            task_id=str(doc["_id"]),
                            revision=int(reminder["revision"]),
                            channel=channel,
                            due_at=_utc(due_at),
                        )
                    )
        found.sort(key=lambda d: d.due_at)

        return found[:limit]

    async def claim(
        self, due: Due, *, now: datetime, lease_until: datetime, owner: str
    ) -> Claim | NotYet | None:
        token = uuid.uuid4().hex
        try:
            await self.claims.insert_one(
                {
                    "_id": _claim_id(due),
                    "token": token,
                    "owner": owner,
                    "taskId": due.task_id,
                    "revision": due.revision,
                    "channel": due.channel,
                    "claimedAt": now,
                    "leaseUntil": lease_until,
                }
            )
        except DuplicateKeyError:
            return None  # another dispatch holds it

        # Read only now that the claim is ours: a holder before us has settled
        # the delivery before it let go, so what is read here is final.
        path = _delivery(due.channel)
        doc = await self.tasks.find_one({"_id": _task_key(due.task_id)})
        if doc is None or not mongo.matches(
            doc,
            {
                **_open_task(),
                "reminder.revision": due.revision,
                f"{path}.state": str(DeliveryState.SCHEDULED),
                f"{path}.dueAt": {"$lte": now},
            },
        ):
            await self._release(due, token)
            return not_yet(doc, due, now)

        reminder = doc["reminder"]
        delivery = reminder["deliveries"][due.channel]
        recipient = reminder.get("phone" if due.channel == Channel.SMS else "email")
        subject, body = reminders.message(doc, due.channel)

        return Claim(
            due=due,
            planned_at=_utc(reminder["sendAt"]),
            attempts=int(delivery.get("attempts") or 0),
            message=Message(
                channel=due.channel,
                to=recipient or "",
                subject=subject,
                body=body,
                tenant_id=str(doc["tenantId"]),
                task_id=due.task_id,
                due_at=_utc(reminder["sendAt"]),
            ),
            claimed_at=now,
            token=token,
        )

    async def settle(self, claim: Claim, settlement: Settlement) -> None:
        due = claim.due
        path = _delivery(due.channel)
        attempts = {f"{path}.attempts": 1} if settlement.attempted else {}

        # The end state of this attempt, written only while the delivery is as
        # the claim left it: scheduled, and due no later than the claim (a
        # settled retry moves it later; a taken-over lease fails it).
        fields: Document = settlement.delivery_fields()
        doc = await mongo.update_where(
            self.tasks,
            _task_key(due.task_id),
            self._held(claim),
            {
                "$set": {f"{path}.{name}": value for name, value in fields.items()},
                "$inc": {"writeSeq": 1, **attempts},
            },
            locks=await self._locks(),
            before=True,
        )
        if doc is None:
            # Cancelled while the provider had it: the cancellation stands,
            # unless the reminder in fact went out.
            if settlement.result is not Result.SENT:
                fields = {"lastError": settlement.error}
            doc = await mongo.update_where(
                self.tasks,
                _task_key(due.task_id),
                {
                    "reminder.revision": due.revision,
                    f"{path}.state": str(DeliveryState.CANCELLED),
                    f"{path}.dueAt": {"$lte": claim.claimed_at},
                },
                {
                    "$set": {f"{path}.{name}": value for name, value in fields.items()},
                    "$inc": {"writeSeq": 1, **attempts},
                },
                locks=await self._locks(),
            )
        await self._release(due, claim.token)

        # NB: the attempt happened whether or not its settlement still
        # applied, so the history records it either way.
        if doc is None:
            log.warning(
                "settlement no longer applies",
                extra={"task_id": due.task_id, "channel": due.channel},
            )
            doc = await self.tasks.find_one({"_id": _task_key(due.task_id)})
        await self._record(
            attempt_record(
                tenant_id=claim.message.tenant_id,
                user_id=None if doc is None else doc.get("userId"),
                due=due,
                attempt=claim.attempts + (1 if settlement.attempted else 0),
                attempted=settlement.attempted,
                result=str(settlement.result),
                at=settlement.at,
                provider_message_id=settlement.provider_message_id,
                error=settlement.error,
                lateness_ms=settlement.lateness_ms,
            ),
        )

    async def expire_leases(self, *, now: datetime, error: str) -> int:
        expired = 0
        # Read them all first: no cursor stays open across the writes.
        stale = await self.claims.find({"leaseUntil": {"$lte": now}}).to_list(None)
        for held in stale:
            due = Due(held["taskId"], int(held["revision"]), held["channel"], now)
            path = _delivery(due.channel)
            doc = await mongo.update_where(
                self.tasks,
                _task_key(due.task_id),
                {
                    "reminder.revision": due.revision,
                    f"{path}.state": str(DeliveryState.SCHEDULED),
                    f"{path}.dueAt": {"$lte": held["claimedAt"]},
                },
                {
                    "$set": {
                        f"{path}.state": str(DeliveryState.FAILED),
                        f"{path}.lastError": error,
                    },
                    "$inc": {f"{path}.attempts": 1, "writeSeq": 1},
                },
                locks=await self._locks(),
                before=True,
            )
            await self._release(due, held["token"])
            if doc is None:
                continue  # settled meanwhile, or no longer this reminder
            expired += 1

            attempts = doc["reminder"]["deliveries"][due.channel].get("attempts")
            await self._record(
                attempt_record(
                    tenant_id=doc.get("tenantId"),
                    user_id=doc.get("userId"),
                    due=due,
                    attempt=int(attempts or 0) + 1,
                    attempted=True,
                    result="unknown",
                    at=now,
                    provider_message_id=None,
                    error=error,
                    lateness_ms=None,
                ),
            )

        return expired

    def _held(self, claim: Claim) -> Document:
        """The filter of a delivery still as `claim` left it."""
        path = _delivery(claim.due.channel)
        return {
            "reminder.revision": claim.due.revision,
            f"{path}.state": str(DeliveryState.SCHEDULED),
            f"{path}.dueAt": {"$lte": claim.claimed_at},
        }

    async def _release(self, due: Due, token: str) -> None:
        """Let go of a claim, unless it has passed to someone else."""
        await self.claims.delete_one({"_id": _claim_id(due), "token": token})

    async def history(
        self, *, tenant_id: str, user_id: str, task_id: str
    ) -> list[Mapping[str, Any]]:
        """The recorded attempts on a task's reminder, oldest first."""
        cursor = self.deliveries.find(
            {"tenantId": tenant_id, "userId": user_id, "taskId": task_id}, {"_id": 0}
        ).sort("at", ASCENDING)

        return [doc async for doc in cursor]

    async def _record(self, record: Mapping[str, Any]) -> None:
        await self.ensure_indexes()
        await self.deliveries.insert_one(dict(record))
