"""The two storage backends behind one face, for the tests of the storage contract.

A `Backend` holds the four stores of one database (task, reminder, privacy
and team store) and the few raw operations a test needs to arrange a state
or read it back without going through the store under test: put a task
document as it is, read one whole, change fields of one, list the claims
held. `backend` is a fixture with one instance per store, MongoDB wire
(FerretDB from `scripts/infra up`) and SQLite, so every test that takes it
runs against both, and a behaviour that differs fails one of the two.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from tm_adapters import mongo, sqlite
from tm_adapters.privacy_store import MongoPrivacyStore
from tm_adapters.reminder_store import MongoReminderStore
from tm_adapters.settings import ConnectionSettings
from tm_adapters.sqlite_privacy_store import SqlitePrivacyStore
from tm_adapters.sqlite_reminder_store import SqliteReminderStore
from tm_adapters.sqlite_task_store import SqliteTaskStore
from tm_adapters.sqlite_team_store import SqliteTeamStore
from tm_adapters.task_store import MongoTaskStore
from tm_adapters.team_store import MongoTeamStore

Document = dict[str, Any]


class Backend(Protocol):
    name: str
    tasks: MongoTaskStore | SqliteTaskStore
    reminders: MongoReminderStore | SqliteReminderStore
    privacy: MongoPrivacyStore | SqlitePrivacyStore
    teams: MongoTeamStore | SqliteTeamStore

    async def put(self, *documents: Document) -> None:
        """Store task documents as they are; their `_id` becomes text."""
        ...

    async def stored(self, task_id: Any) -> Document | None:
        """A task document as stored, outbox included, `_id` as text."""
        ...

    async def change(self, task_id: Any, fields: Mapping[str, Any]) -> None:
        """Set fields (dotted paths) of a stored task, behind the stores' back."""
        ...

    async def claims(self) -> list[Document]:
        """The claims held: `_id`, `owner`, `token`, `leaseUntil`."""
        ...

    async def other_worker(self) -> MongoReminderStore | SqliteReminderStore:
        """A reminder store on a connection of its own, as another worker has."""
        ...

    async def tables(self) -> set[str]:
        """The names of the collections or tables that hold any data."""
        ...


def _text_ids(*documents: Document) -> None:
    for document in documents:
        document["_id"] = str(document["_id"])


class MongoBackend:
    name = "mongodb"

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.tasks = MongoTaskStore(db)
        self.reminders = MongoReminderStore(db)
        self.privacy = MongoPrivacyStore(db)
        self.teams = MongoTeamStore(db)

    async def put(self, *documents: Document) -> None:
        _text_ids(*documents)
        for document in documents:
            await self.tasks.insert(document)

    async def stored(self, task_id: Any) -> Document | None:
        found = await self.db["visitor_time_tasks"].find_one(
            {"_id": ObjectId(str(task_id))}
        )
        if found is not None:
            found["_id"] = str(found["_id"])
        return found

    async def change(self, task_id: Any, fields: Mapping[str, Any]) -> None:
        await self.db["visitor_time_tasks"].update_one(
            {"_id": ObjectId(str(task_id))}, {"$set": dict(fields)}
        )

    async def claims(self) -> list[Document]:
        return await self.db["reminder_claims"].find().to_list(None)

    async def other_worker(self) -> MongoReminderStore:
        return MongoReminderStore(self.db)

    async def tables(self) -> set[str]:
        names = await self.db.list_collection_names()
        return {n for n in names if await self.db[n].estimated_document_count()}


class SqliteBackend:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite.Database(path)
        self.tasks = SqliteTaskStore(self.db)
        self.reminders = SqliteReminderStore(self.db)
        self.privacy = SqlitePrivacyStore(self.db)
        self.teams = SqliteTeamStore(self.db)
        self._others: list[sqlite.Database] = []

    async def put(self, *documents: Document) -> None:
        _text_ids(*documents)
        for document in documents:
            await self.tasks.insert(document)

    async def stored(self, task_id: Any) -> Document | None:
        return await self.db.read(
            lambda connection: sqlite.read_task(connection, str(task_id))
        )

    async def change(self, task_id: Any, fields: Mapping[str, Any]) -> None:
        def apply(connection: sqlite3.Connection) -> None:
            document = sqlite.read_task(connection, str(task_id))
            assert document is not None
            for path, value in fields.items():
                sqlite.assign(document, path, value)
            sqlite.put_task(connection, document)

        await self.db.write(apply)

    async def claims(self) -> list[Document]:
        def select(connection: sqlite3.Connection) -> list[Document]:
            rows = connection.execute(
                "SELECT id, owner, token, lease_until FROM reminder_claims"
            )
            return [
                {
                    "_id": key,
                    "owner": owner,
                    "token": token,
                    "leaseUntil": datetime.fromisoformat(until),
                }
                for key, owner, token, until in rows
            ]

        return await self.db.read(select)

    async def other_worker(self) -> SqliteReminderStore:
        other = sqlite.Database(self.path)
        self._others.append(other)
        return SqliteReminderStore(other)

    async def tables(self) -> set[str]:
        def select(connection: sqlite3.Connection) -> set[str]:
            names = [
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                )
            ]
            return {
                name
                for name in names
                if connection.execute(f'SELECT 1 FROM "{name}" LIMIT 1').fetchone()  # noqa: S608
            }

        return await self.db.read(select)

    async def close(self) -> None:
        for other in self._others:
            await other.close()
        await self.db.close()


@pytest.fixture(params=["mongodb", "sqlite"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Backend]:
    """The stores of a fresh database, on MongoDB wire and on SQLite."""
    if request.param == "sqlite":
        local = SqliteBackend(tmp_path / "contract.sqlite3")
        await local.db.prepare()
        try:
            yield local
        finally:
            await local.close()
        return

    settings = ConnectionSettings(
        mongodb_database=f"tm_contract_{uuid.uuid4().hex[:12]}",
        mongodb_timeout_ms=3000,
    )
    client: AsyncMongoClient[Document] = mongo.open_client(settings)
    try:
        await client.admin.command("ping")
    except Exception as exc:
        await client.close()
        pytest.fail(
            f"MongoDB/FerretDB is not reachable at {settings.mongodb_uri} ({exc}); "
            "start it with `scripts/infra up`",
            pytrace=False,
        )
    remote = MongoBackend(mongo.database(client, settings))
    try:
        await remote.tasks.prepare()
        await remote.privacy.prepare()
        await remote.teams.prepare()
        yield remote
    finally:
        await client.drop_database(settings.mongodb_database)
        await client.close()
