"""The privacy store on SQLite: a person's data across every table of the file.

`SqlitePrivacyStore` implements `tm_domain.storage.PrivacyStore` as
`tm_adapters.privacy_store` does on MongoDB: it reads the task documents
(deleted ones included), the delivery history and the audit records, and
purges a task with its history in one transaction, so no writer ever sees
half a purge.

`COLLECTIONS` names every table the single-process mode writes and where the
export shows it; a test compares it with the tables the file really holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tm_adapters import sqlite
from tm_domain import storage

COLLECTIONS: dict[str, str] = {
    sqlite.TASKS: "tasks",
    sqlite.DELIVERIES: "reminderDeliveries",
    sqlite.AUDIT: "auditTrail",
    sqlite.MEMBERSHIPS: "teamMemberships",
    sqlite.SCHEDULE: (
        "not exported: a copy of the due times of the scheduled deliveries in "
        "the tasks, by task id and channel, kept so that due reminders are "
        "found by index; it holds nothing the tasks do not"
    ),
    sqlite.CLAIMS: (
        "not exported: a claim names a task, a revision and a channel while one "
        "send is under way, is removed when it settles, and holds nothing "
        "about the person"
    ),
}
"""Table name to export section, or to why the export leaves it out."""

# Fields of the machinery, not of the person: the outbox of unpublished
# events (a copy of ids and due times) and the write counter.
_INTERNAL = ("outbox", "outboxPending", "writeSeq")

# What an administrator's list of reminders needs: no recipients or texts.
_REMINDER_FIELDS = ("enabled", "channels", "sendAt", "revision", "deliveries")

_ERASED = "DataErased"


def _decoded(rows: sqlite3.Cursor) -> list[dict[str, Any]]:
    return [sqlite.decode(text) for (text,) in rows]


def _awaits_purge(record: Mapping[str, Any]) -> bool:
    """An erasure carried out (not a dry run) whose data is not purged yet."""
    return (
        record.get("action") == _ERASED
        and record.get("dryRun") is False
        and record.get("purgedAt") is None
    )


class SqlitePrivacyStore:
    collections: Mapping[str, str] = COLLECTIONS

    def __init__(self, db: sqlite.Database) -> None:
        self.db = db

    async def prepare(self) -> None:
        await self.db.prepare()

    async def tasks_of(
        self, user: storage.User, *, deleted: bool
    ) -> list[storage.Task]:
        where = "tenant_id = ? AND user_id = ?"
        if not deleted:
            where += " AND deleted_at IS NULL"

        def select(connection: sqlite3.Connection) -> list[storage.Task]:
            found = sqlite.read_tasks(
                connection,
                where + " ORDER BY created_at, id",
                (user.tenant_id, user.user_id),
            )
            return [sqlite.without(document, *_INTERNAL) for document in found]

        return await self.db.read(select)

    async def deliveries_of(self, user: storage.User) -> list[dict[str, Any]]:
        def select(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = connection.execute(
                """SELECT id, document FROM reminder_deliveries
                    WHERE tenant_id = ? AND user_id = ? ORDER BY at, id""",
                (user.tenant_id, user.user_id),
            )
            return [{"_id": key, **sqlite.decode(text)} for key, text in rows]

        return await self.db.read(select)

    async def audit_of(self, user: storage.User) -> list[dict[str, Any]]:
        def select(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            return _decoded(
                connection.execute(
                    """SELECT document FROM privacy_audit
                        WHERE tenant_id = ? AND user_id = ? ORDER BY at, id""",
                    (user.tenant_id, user.user_id),
                )
            )

        return await self.db.read(select)

    async def tenants_with_deletions(self) -> list[str]:
        def select(connection: sqlite3.Connection) -> list[str]:
            deleted = {
                tenant
                for (tenant,) in connection.execute(
                    """SELECT DISTINCT tenant_id FROM visitor_time_tasks
                       WHERE deleted_at IS NOT NULL"""
                )
            }
            records = _decoded(connection.execute("SELECT document FROM privacy_audit"))
            erased = {str(r.get("tenantId")) for r in records if _awaits_purge(r)}
            return sorted(deleted | erased)

        return await self.db.read(select)

    async def memberships_of(self, user: storage.User) -> list[dict[str, Any]]:
        def select(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = connection.execute(
                """SELECT tenant_id, owner_id, member_id FROM owner_team_members
                   WHERE tenant_id = ? AND (owner_id = ? OR member_id = ?)
                   ORDER BY owner_id, member_id""",
                (user.tenant_id, user.user_id, user.user_id),
            )
            return [
                {"tenantId": tenant, "ownerId": owner, "memberId": member}
                for tenant, owner, member in rows
            ]

        return await self.db.read(select)

    async def forget_memberships(self, user: storage.User) -> int:
        def delete(connection: sqlite3.Connection) -> int:
            removed = connection.execute(
                """DELETE FROM owner_team_members
                   WHERE tenant_id = ? AND (owner_id = ? OR member_id = ?)""",
                (user.tenant_id, user.user_id, user.user_id),
            )
            return removed.rowcount

        return await self.db.write(delete)

    async def record(self, entry: Mapping[str, Any]) -> None:
        document = dict(entry)
        at = document.get("at")

        def insert(connection: sqlite3.Connection) -> None:
            connection.execute(
                """INSERT INTO privacy_audit (id, tenant_id, user_id, at, document)
                    VALUES (?, ?, ?, ?, ?)""",
                (
                    str(document["_id"]),
                    document.get("tenantId"),
                    document.get("userId"),
                    sqlite.instant(at) if isinstance(at, datetime) else None,
                    sqlite.encode(document),
                ),
            )

        await self.db.write(insert)

    async def amend(self, record_id: str, fields: Mapping[str, Any]) -> None:
        def update(connection: sqlite3.Connection) -> None:
            row = connection.execute(
                "SELECT document FROM privacy_audit WHERE id = ?", (record_id,)
            ).fetchone()
            if row is None:
                return
            document = {**sqlite.decode(row[0]), **fields}
            connection.execute(
                "UPDATE privacy_audit SET document = ? WHERE id = ?",
                (sqlite.encode(document), record_id),
            )

        await self.db.write(update)

    async def expired(
        self, *, before: datetime, tenant_id: str | None, limit: int
    ) -> list[storage.Task]:
        where = "deleted_at IS NOT NULL AND deleted_at <= ?"
        parameters: tuple[Any, ...] = (sqlite.instant(before),)
        if tenant_id is not None:
            where += " AND tenant_id = ?"
            parameters += (tenant_id,)

        def select(connection: sqlite3.Connection) -> list[storage.Task]:
            found = sqlite.read_tasks(
                connection, where + " ORDER BY id LIMIT ?", (*parameters, limit)
            )
            return [
                {
                    key: doc.get(key)
                    for key in ("_id", "tenantId", "userId", "deletedAt")
                }
                for doc in found
            ]

        return await self.db.read(select)

    async def remove(self, task_id: str, *, before: datetime) -> storage.Removed:
        def delete(connection: sqlite3.Connection) -> storage.Removed:
            document = sqlite.read_task(connection, task_id)
            deleted_at = None if document is None else document.get("deletedAt")
            if not sqlite.at_or_before(deleted_at, before):
                return storage.Removed(tasks=0, deliveries=0)
            history = connection.execute(
                "DELETE FROM reminder_deliveries WHERE task_id = ?", (task_id,)
            )
            return storage.Removed(
                tasks=sqlite.delete_task(connection, task_id),
                deliveries=history.rowcount,
            )

        return await self.db.write(delete)

    async def erasures_due(
        self, *, before: datetime, tenant_id: str | None
    ) -> list[dict[str, Any]]:
        def select(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            records = _decoded(
                connection.execute("SELECT document FROM privacy_audit ORDER BY id")
            )
            return [
                record
                for record in records
                if _awaits_purge(record)
                and sqlite.at_or_before(record.get("purgeAfter"), before)
                and (tenant_id is None or record.get("tenantId") == tenant_id)
            ]

        return await self.db.read(select)

    async def remove_deliveries(self, user: storage.User, *, before: datetime) -> int:
        def delete(connection: sqlite3.Connection) -> int:
            removed = connection.execute(
                """DELETE FROM reminder_deliveries
                    WHERE tenant_id = ? AND user_id = ? AND at <= ?""",
                (user.tenant_id, user.user_id, sqlite.instant(before)),
            )
            return removed.rowcount

        return await self.db.write(delete)

    async def tenant_tasks(
        self, tenant_id: str, *, user_id: str | None, limit: int
    ) -> list[storage.Task]:
        where = "tenant_id = ? AND deleted_at IS NULL"
        parameters: tuple[Any, ...] = (tenant_id,)
        if user_id is not None:
            where += " AND user_id = ?"
            parameters += (user_id,)

        def select(connection: sqlite3.Connection) -> list[storage.Task]:
            shown = []
            for doc in sqlite.read_tasks(connection, where, parameters):
                reminder = doc.get("reminder")
                if not isinstance(reminder, Mapping):
                    continue
                shown.append(
                    {
                        "_id": doc["_id"],
                        "tenantId": doc.get("tenantId"),
                        "userId": doc.get("userId"),
                        "reminder": {
                            key: reminder[key]
                            for key in _REMINDER_FIELDS
                            if key in reminder
                        },
                    }
                )
            # As MongoDB sorts: a missing instant first, then by instant.
            shown.sort(key=_by_send_at)
            return shown[:limit]

        return await self.db.read(select)

    async def task_owner(self, tenant_id: str, task_id: str) -> storage.User | None:
        document = await self.db.read(
            lambda connection: sqlite.read_task(connection, task_id)
        )
        if (
            document is None
            or document.get("tenantId") != tenant_id
            or document.get("deletedAt")
        ):
            return None

        return storage.User(tenant_id=tenant_id, user_id=str(document["userId"]))

    async def tenant_counts(self, tenant_id: str | None) -> list[dict[str, Any]]:
        def count(connection: sqlite3.Connection) -> list[dict[str, Any]]:
            rows = connection.execute(
                """SELECT tenant_id,
                        COUNT(DISTINCT CASE WHEN deleted_at IS NULL
                                            THEN user_id END),
                        SUM(deleted_at IS NULL),
                        SUM(deleted_at IS NOT NULL)
                    FROM visitor_time_tasks
                    WHERE ?1 IS NULL OR tenant_id = ?1
                    GROUP BY tenant_id ORDER BY tenant_id""",
                (tenant_id,),
            ).fetchall()
            records = _decoded(connection.execute("SELECT document FROM privacy_audit"))
            return [
                {
                    "tenantId": tenant,
                    "users": users,
                    "tasks": open_tasks,
                    "deletedTasks": deleted_tasks,
                    "erasuresAwaitingPurge": sum(
                        1
                        for record in records
                        if record.get("tenantId") == tenant and _awaits_purge(record)
                    ),
                }
                for tenant, users, open_tasks, deleted_tasks in rows
            ]

        return await self.db.read(count)

    async def overdue(self, *, before: datetime) -> tuple[int, datetime | None]:
        def count(connection: sqlite3.Connection) -> tuple[int, datetime | None]:
            found, earliest = connection.execute(
                "SELECT COUNT(*), MIN(due_at) FROM reminder_schedule WHERE due_at <= ?",
                (sqlite.instant(before),),
            ).fetchone()
            return int(found), (
                None if earliest is None else datetime.fromisoformat(earliest)
            )

        return await self.db.read(count)


def _by_send_at(task: Mapping[str, Any]) -> tuple[bool, str, str]:
    send_at = task["reminder"].get("sendAt")
    stored = sqlite.instant(send_at) if isinstance(send_at, datetime) else ""

    return (bool(stored), stored, str(task["_id"]))
