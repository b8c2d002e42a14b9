"""The reminder store on SQLite: claims, settlements and leases in one transaction each.

`SqliteReminderStore` implements `tm_domain.delivery.ReminderStore` with the
rules of `tm_adapters.reminder_store`, the MongoDB one, and the tests of the
storage contract hold both to them:

- a claim is a row of `reminder_claims` whose key names the delivery (task,
  revision, channel); inserting it can succeed once. In the same transaction
  the task is read, and the claim stays only while the task is open, the
  revision current and the delivery scheduled and due;
- a settlement writes the delivery's end state only while the delivery is as
  the claim found it (or cancelled meanwhile, which then stands unless the
  reminder went out), removes the claim, and records the attempt in
  `reminder_deliveries`, all in one transaction;
- a claim past its lease means its holder stopped inside the provider call;
  `expire_leases` fails that delivery as of unknown outcome.

MongoDB needs an ordering of separate writes (settle, then release) for the
next claimer to read a settled state; here the transaction gives it.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tm_adapters import sqlite
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


def _claim_id(due: Due) -> str:
    return f"{due.task_id}:{due.revision}:{due.channel}"


def _is_open(document: Mapping[str, Any]) -> bool:
    """Whether the task's reminder may still go out."""
    return (
        document.get("deletedAt") is None
        and document.get("completed") is False
        and sqlite.lookup(document, "reminder.enabled") is True
    )


def _delivery(document: Mapping[str, Any], channel: str) -> Document | None:
    found = sqlite.lookup(document, f"reminder.deliveries.{channel}")
    return found if isinstance(found, dict) else None


def _as_claimed(
    document: Mapping[str, Any] | None,
    due: Due,
    *,
    state: DeliveryState,
    not_after: datetime,
) -> Document | None:
    """The delivery `due` names when it is in `state` and due by `not_after`."""
    if document is None or sqlite.lookup(document, "reminder.revision") != due.revision:
        return None
    delivery = _delivery(document, due.channel)
    if delivery is None or delivery.get("state") != state:
        return None

    return delivery if sqlite.at_or_before(delivery.get("dueAt"), not_after) else None


def _release(connection: sqlite3.Connection, due: Due, token: str) -> None:
    connection.execute(
        "DELETE FROM reminder_claims WHERE id = ? AND token = ?",
        (_claim_id(due), token),
    )


def _record(connection: sqlite3.Connection, record: Mapping[str, Any]) -> None:
    """One attempt in the delivery history; never a recipient."""
    connection.execute(
        """INSERT INTO reminder_deliveries
                (id, tenant_id, user_id, task_id, at, document)
            VALUES (?, ?, ?, ?, ?, ?)""",
        (
            sqlite.new_task_id(),
            record["tenantId"],
            record["userId"],
            record["taskId"],
            sqlite.instant(record["at"]),
            sqlite.encode(record),
        ),
    )


class SqliteReminderStore:
    """Reminder deliveries in the task documents, with their attempt history."""

    def __init__(self, db: sqlite.Database) -> None:
        self.db = db

    async def pending(self, *, until: datetime, limit: int) -> list[Due]:
        def select(connection: sqlite3.Connection) -> list[Due]:
            rows = connection.execute(
                """SELECT s.task_id, s.revision, s.channel, s.due_at
                    FROM reminder_schedule AS s
                    JOIN visitor_time_tasks AS t ON t.id = s.task_id
                    WHERE s.open = 1 AND s.due_at <= ?
                    ORDER BY s.due_at, t.rowid, s.position LIMIT ?""",
                (sqlite.instant(until), limit),
            )
            return [
                Due(task_id, int(revision), channel, datetime.fromisoformat(due_at))
                for task_id, revision, channel, due_at in rows
            ]

        return await self.db.read(select)

    async def claim(
        self, due: Due, *, now: datetime, lease_until: datetime, owner: str
    ) -> Claim | NotYet | None:
        token = uuid.uuid4().hex

        def take(connection: sqlite3.Connection) -> Claim | NotYet | None:
            try:
                connection.execute(
                    """INSERT INTO reminder_claims (id, token, owner, task_id,
                            revision, channel, claimed_at, lease_until)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
                    (
                        _claim_id(due),
                        token,
                        owner,
                        due.task_id,
                        due.revision,
                        due.channel,
                        sqlite.instant(now),
                        sqlite.instant(lease_until),
                    ),
                )
            except sqlite3.IntegrityError:
                return None  # another dispatch holds it

            document = sqlite.read_task(connection, due.task_id)
            delivery = _as_claimed(
                document, due, state=DeliveryState.SCHEDULED, not_after=now
            )
            if document is None or delivery is None or not _is_open(document):
                _release(connection, due, token)
                return not_yet(document, due, now)

            return self._claim(document, delivery, due, now=now, token=token)

        return await self.db.write(take)

    @staticmethod
    def _claim(
        document: Document,
        delivery: Document,
        due: Due,
        *,
        now: datetime,
        token: str,
    ) -> Claim:
        reminder = document["reminder"]
        recipient = reminder.get("phone" if due.channel == Channel.SMS else "email")
        subject, body = reminders.message(document, due.channel)
        planned_at: datetime = reminder["sendAt"]

        return Claim(
            due=due,
            planned_at=planned_at,
            attempts=int(delivery.get("attempts") or 0),
            message=Message(
                channel=due.channel,
                to=recipient or "",
                subject=subject,
                body=body,
                tenant_id=str(document["tenantId"]),
                task_id=due.task_id,
                due_at=planned_at,
            ),
            claimed_at=now,
            token=token,
        )

    async def settle(self, claim: Claim, settlement: Settlement) -> None:
        due = claim.due

        # The end state of this attempt, written only while the delivery is
        # as the claim left it: scheduled, and due no later than the claim (a
        # settled retry moves it later; a taken-over lease fails it).
        fields: Document = settlement.delivery_fields()

        def apply(connection: sqlite3.Connection) -> None:
            document = sqlite.read_task(connection, due.task_id)
            delivery = _as_claimed(
                document, due, state=DeliveryState.SCHEDULED, not_after=claim.claimed_at
            )
            written = fields
            if delivery is None:
                # Cancelled while the provider had it: the cancellation
                # stands, unless the reminder in fact went out.
                delivery = _as_claimed(
                    document,
                    due,
                    state=DeliveryState.CANCELLED,
                    not_after=claim.claimed_at,
                )
                if settlement.result is not Result.SENT:
                    written = {"lastError": settlement.error}
            if document is not None and delivery is not None:
                delivery.update(written)
                if settlement.attempted:
                    delivery["attempts"] = int(delivery.get("attempts") or 0) + 1
                document["writeSeq"] = int(document.get("writeSeq") or 0) + 1
                sqlite.put_task(connection, document)
            else:
                log.warning(
                    "settlement no longer applies",
                    extra={"task_id": due.task_id, "channel": due.channel},
                )
            _release(connection, due, claim.token)

            # NB: the attempt happened whether or not its settlement still
            # applied, so the history records it either way.
            _record(
                connection,
                attempt_record(
                    tenant_id=claim.message.tenant_id,
                    user_id=None if document is None else document.get("userId"),
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

        await self.db.write(apply)

    async def expire_leases(self, *, now: datetime, error: str) -> int:
        def apply(connection: sqlite3.Connection) -> int:
            stale = connection.execute(
                """SELECT token, task_id, revision, channel, claimed_at
                    FROM reminder_claims WHERE lease_until <= ?""",
                (sqlite.instant(now),),
            ).fetchall()
            expired = 0
            for token, task_id, revision, channel, claimed_at in stale:
                due = Due(task_id, int(revision), channel, now)
                document = sqlite.read_task(connection, task_id)
                delivery = _as_claimed(
                    document,
                    due,
                    state=DeliveryState.SCHEDULED,
                    not_after=datetime.fromisoformat(claimed_at),
                )
                _release(connection, due, token)
                if document is None or delivery is None:
                    continue  # settled meanwhile, or no longer this reminder
                expired += 1

                attempts = int(delivery.get("attempts") or 0) + 1
                delivery.update(
                    state=str(DeliveryState.FAILED), lastError=error, attempts=attempts
                )
                document["writeSeq"] = int(document.get("writeSeq") or 0) + 1
                sqlite.put_task(connection, document)
                _record(
                    connection,
                    attempt_record(
                        tenant_id=document.get("tenantId"),
                        user_id=document.get("userId"),
                        due=due,
                        attempt=attempts,
                        attempted=True,
                        result="unknown",
                        at=now,
                        provider_message_id=None,
                        error=error,
                        lateness_ms=None,
                    ),
                )

            return expired

        return await self.db.write(apply)

    async def history(
        self, *, tenant_id: str, user_id: str, task_id: str
    ) -> list[Mapping[str, Any]]:
        """The recorded attempts on a task's reminder, oldest first."""

        def select(connection: sqlite3.Connection) -> list[Mapping[str, Any]]:
            rows = connection.execute(
                """SELECT document FROM reminder_deliveries
                    WHERE tenant_id = ? AND user_id = ? AND task_id = ?
                    ORDER BY at, rowid""",
                (tenant_id, user_id, task_id),
            )
            return [sqlite.decode(text) for (text,) in rows]

        return await self.db.read(select)
