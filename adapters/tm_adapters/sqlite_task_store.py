"""The task store on SQLite: `tm_domain.storage.TaskStore` in one local file.

The same documents as `tm_adapters.task_store` keeps in MongoDB, with the
same promises: every user read is scoped to a user of a tenant, and a write
happens only at the `writeSeq` it was decided on. Where MongoDB needs one
conditional update, here a transaction holding the write lock reads the
task, checks it and writes it back.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from tm_adapters import sqlite
from tm_domain import search, storage


def _owned(document: Mapping[str, Any], user: storage.User) -> bool:
    return (document.get("tenantId"), document.get("userId")) == (
        user.tenant_id,
        user.user_id,
    )


class SqliteTaskStore:
    """Tasks, each with its reminder and its outbox, in `visitor_time_tasks`."""

    def __init__(self, db: sqlite.Database) -> None:
        self.db = db

    async def prepare(self) -> None:
        await self.db.prepare()

    def new_id(self) -> str:
        return sqlite.new_task_id()

    async def insert(self, task: Mapping[str, Any]) -> None:
        document = dict(task)
        await self.db.write(lambda connection: sqlite.put_task(connection, document))

    async def get(self, user: storage.User, task_id: str) -> storage.Task | None:
        found = await self.db.read(
            lambda connection: sqlite.read_task(connection, task_id)
        )
        if found is None or not _owned(found, user) or found.get("deletedAt"):
            return None

        return sqlite.without(found, "outbox")

    async def write(
        self,
        user: storage.User,
        task_id: str,
        *,
        write_seq: int,
        changes: Mapping[str, Any],
        event: Mapping[str, Any],
    ) -> storage.Task | None:
        def apply(connection: sqlite3.Connection) -> storage.Task | None:
            document = sqlite.read_task(connection, task_id)
            if (
                document is None
                or not _owned(document, user)
                or document.get("writeSeq") != write_seq
            ):
                return None

            for path, value in changes.items():
                sqlite.assign(document, path, value)
            document["version"] = int(document.get("version") or 0) + 1
            document["writeSeq"] = write_seq + 1
            document["outbox"] = [*(document.get("outbox") or ()), dict(event)]
            document["outboxPending"] = True
            sqlite.put_task(connection, document)

            return sqlite.without(document, "outbox")

        return await self.db.write(apply)

    async def between(
        self,
        user: storage.User,
        first: str,
        last: str,
        *,
        limit: int,
    ) -> list[storage.Task]:
        def select(connection: sqlite3.Connection) -> list[storage.Task]:
            found = sqlite.read_tasks(
                connection,
                """tenant_id = ? AND user_id = ? AND task_date BETWEEN ? AND ?
                   AND deleted_at IS NULL
                   ORDER BY sort_key, created_at, id LIMIT ?""",
                (user.tenant_id, user.user_id, first, last, limit),
            )
            return [sqlite.without(document, "outbox") for document in found]

        return await self.db.read(select)

    async def assigned_between(
        self,
        tenant_id: str,
        owner_id: str,
        first: str,
        last: str,
        *,
        member: str | None,
        limit: int,
    ) -> list[storage.Task]:
        def select(connection: sqlite3.Connection) -> list[storage.Task]:
            found = sqlite.read_tasks(
                connection,
                """tenant_id = ? AND task_date BETWEEN ? AND ?
                   AND deleted_at IS NULL ORDER BY sort_key, created_at, id""",
                (tenant_id, first, last),
            )
            assigned = [
                sqlite.without(document, "outbox")
                for document in found
                if document.get("assignedBy") == owner_id
                and (member is None or document.get("userId") == member)
            ]
            return assigned[:limit]

        return await self.db.read(select)

    async def get_assigned(
        self, tenant_id: str, owner_id: str, task_id: str
    ) -> storage.Task | None:
        found = await self.db.read(
            lambda connection: sqlite.read_task(connection, task_id)
        )
        if (
            found is None
            or found.get("tenantId") != tenant_id
            or found.get("assignedBy") != owner_id
            or found.get("deletedAt") is not None
        ):
            return None

        return sqlite.without(found, "outbox")

    async def search(
        self,
        user: storage.User,
        query: search.SearchQuery,
        *,
        after: search.Position | None,
        limit: int,
    ) -> list[storage.Task]:
        # The domain's own predicate and order, over the user's tasks: a
        # single-machine store holds few enough to read them all.
        def select(connection: sqlite3.Connection) -> list[storage.Task]:
            found = sqlite.read_tasks(
                connection,
                "tenant_id = ? AND user_id = ? AND deleted_at IS NULL",
                (user.tenant_id, user.user_id),
            )
            selected = [
                sqlite.without(document, "outbox")
                for document in found
                if search.matches(document, query)
                and (after is None or search.comes_after(document, after))
            ]
            selected.sort(key=search.order_key)
            return selected[:limit]

        return await self.db.read(select)

    async def pending_events(self, *, limit: int) -> list[storage.OutboxEntry]:
        def select(connection: sqlite3.Connection) -> list[storage.OutboxEntry]:
            found = sqlite.read_tasks(
                connection, "outbox_pending = 1 ORDER BY id LIMIT ?", (limit,)
            )
            return [
                storage.OutboxEntry(doc["_id"], tuple(doc.get("outbox") or ()))
                for doc in found
            ]

        return await self.db.read(select)

    async def events_of(self, task_ids: Sequence[str]) -> list[storage.OutboxEntry]:
        def select(connection: sqlite3.Connection) -> list[storage.OutboxEntry]:
            entries = []
            for task_id in task_ids:
                document = sqlite.read_task(connection, task_id)
                if document is not None and document.get("outboxPending"):
                    entries.append(
                        storage.OutboxEntry(
                            task_id, tuple(document.get("outbox") or ())
                        )
                    )
            return entries

        return await self.db.read(select)

    async def drop_events(self, task_id: str, event_ids: Sequence[str]) -> None:
        published = set(event_ids)

        def apply(connection: sqlite3.Connection) -> None:
            document = sqlite.read_task(connection, task_id)
            if document is None:
                return
            remaining = [
                event
                for event in document.get("outbox") or ()
                if event.get("id") not in published
            ]
            document["outbox"] = remaining
            document["outboxPending"] = bool(remaining)
            sqlite.put_task(connection, document)

        await self.db.write(apply)
