"""The task store on MongoDB: `tm_domain.storage.TaskStore` over `visitor_time_tasks`.

Every user query filters on `tenantId` and `userId` first, and every index
that serves users is led by the same pair. Writes are single-document
updates conditional on `writeSeq`, the only atomicity MongoDB and FerretDB
both give without transactions.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure, ExecutionTimeout

from tm_adapters import mongo
from tm_domain import storage
from tm_domain.search import Position, SearchQuery

COLLECTION = "visitor_time_tasks"

# Reads that users make never need the outbox; it can be long while Kafka is down.
_WITHOUT_OUTBOX = {"outbox": False}

# How often dropping published events is tried again while user writes keep
# moving the task; a miss leaves the events for the next turn of the relay.
_DROP_ATTEMPTS = 5


def _per_user(*keys: tuple[str, int]) -> IndexModel:
    return IndexModel([("tenantId", ASCENDING), ("userId", ASCENDING), *keys])


INDEXES = [
    # The views and the look-ups of one user, from the design document,
    # each led by the tenant so that no query can reach across tenants.
    _per_user(("taskDate", ASCENDING)),
    _per_user(("taskDate", ASCENDING), ("session", ASCENDING)),
    _per_user(("completed", ASCENDING), ("taskDate", ASCENDING)),
    _per_user(("taskDate", ASCENDING), ("scopeTag", ASCENDING)),
    _per_user(("sortKey", ASCENDING)),
    # An owner's views of the tasks they assigned to their team.
    IndexModel(
        [("tenantId", ASCENDING), ("assignedBy", ASCENDING), ("taskDate", ASCENDING)]
    ),
    IndexModel([("tenantId", ASCENDING), ("createdAt", DESCENDING)]),
    # The reminder worker serves every tenant from one process, so its
    # indexes are not led by the tenant: each query it makes reads across
    # tenants by due time.
    IndexModel(
        [
            ("reminder.enabled", ASCENDING),
            ("reminder.sendAt", ASCENDING),
            ("reminder.sentAt", ASCENDING),
        ]
    ),
    IndexModel(
        [
            ("reminder.deliveries.sms.state", ASCENDING),
            ("reminder.deliveries.sms.dueAt", ASCENDING),
        ]
    ),
    IndexModel(
        [
            ("reminder.deliveries.email.state", ASCENDING),
            ("reminder.deliveries.email.dueAt", ASCENDING),
        ]
    ),
    # The outbox relay also works across tenants.
    IndexModel([("outboxPending", ASCENDING)]),
]


@contextlib.contextmanager
def unavailable_on_outage() -> Iterator[None]:
    try:
        yield
    except (ConnectionFailure, ExecutionTimeout) as exc:
        raise storage.StoreUnavailable(f"MongoDB: {type(exc).__name__}") from exc


def _index_key(fields: Iterable[tuple[str, Any]]) -> tuple[tuple[str, int], ...]:
    return tuple((name, int(direction)) for name, direction in fields)


def _object_id(task_id: str) -> ObjectId | None:
    return ObjectId(task_id) if ObjectId.is_valid(task_id) else None


def _task(doc: Mapping[str, Any]) -> storage.Task:
    task = {key: value for key, value in doc.items() if key != "outbox"}
    task["_id"] = str(task["_id"])

    return task


class MongoTaskStore:
    """Tasks in one MongoDB (or FerretDB) collection.

    Every update of a task holds the task's lock from `tm_adapters.mongo`,
    which is a no-op on MongoDB and what makes the update atomic on FerretDB.
    """

    def __init__(self, db: AsyncDatabase[dict[str, Any]]) -> None:
        self.db = db
        self.collection: AsyncCollection[dict[str, Any]] = db[COLLECTION]
        self._locks: mongo.Locks | None = None

    async def prepare(self) -> None:
        # NB: FerretDB 1.24 panics, and drops the connection, on a
        # createIndexes that names several indexes some of which exist; so
        # only the missing ones are created, one at a time.
        with unavailable_on_outage():
            found = await self.collection.index_information()
            existing = {_index_key(index["key"]) for index in found.values()}
            for index in INDEXES:
                if _index_key(index.document["key"].items()) not in existing:
                    await self.collection.create_indexes([index])
            await self._lock_kind()

    async def _lock_kind(self) -> mongo.Locks:
        if self._locks is None:
            self._locks = await mongo.locks_for(self.db)
        return self._locks

    def new_id(self) -> str:
        return str(ObjectId())

    async def insert(self, task: Mapping[str, Any]) -> None:
        doc = {**task, "_id": ObjectId(task["_id"])}
        with unavailable_on_outage():
            await self.collection.insert_one(doc)

    async def get(self, user: storage.User, task_id: str) -> storage.Task | None:
        oid = _object_id(task_id)
        if oid is None:
            return None
        # NB: by `_id` alone, then checked here: FerretDB 1.24 looks up a
        # bare `_id` filter by key but scans the collection for any other.
        with unavailable_on_outage():
            doc = await self.collection.find_one({"_id": oid})
        if doc is None or not mongo.matches(doc, self._visible(user)):
            return None

        return _task(doc)

    async def write(
        self,
        user: storage.User,
        task_id: str,
        *,
        write_seq: int,
        changes: Mapping[str, Any],
        event: Mapping[str, Any],
    ) -> storage.Task | None:
        oid = _object_id(task_id)
        if oid is None:
            return None
        with unavailable_on_outage():
            doc = await mongo.update_where(
                self.collection,
                oid,
                {**self._owned(user), "writeSeq": write_seq},
                {
                    "$set": {**changes, "outboxPending": True},
                    "$inc": {"version": 1, "writeSeq": 1},
                    "$push": {"outbox": dict(event)},
                },
                locks=await self._lock_kind(),
            )

        return None if doc is None else _task(doc)

    async def between(
        self,
        user: storage.User,
        first: str,
        last: str,
        *,
        limit: int,
    ) -> list[storage.Task]:
        query = {
            **self._owned(user),
            "taskDate": {"$gte": first, "$lte": last},
            "deletedAt": None,
        }
        with unavailable_on_outage():
            cursor = (
                self.collection.find(query, projection=_WITHOUT_OUTBOX)
                .sort([("sortKey", ASCENDING), ("createdAt", ASCENDING)])
                .limit(limit)
            )
            docs = await cursor.to_list()

        return [_task(doc) for doc in docs]

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
        query: dict[str, Any] = {
            "tenantId": tenant_id,
            "assignedBy": owner_id,
            "taskDate": {"$gte": first, "$lte": last},
            "deletedAt": None,
        }
        if member is not None:
            query["userId"] = member
        with unavailable_on_outage():
            cursor = (
                self.collection.find(query, projection=_WITHOUT_OUTBOX)
                .sort([("sortKey", ASCENDING), ("createdAt", ASCENDING)])
                .limit(limit)
            )
            docs = await cursor.to_list()

        return [_task(doc) for doc in docs]

    async def get_assigned(
        self, tenant_id: str, owner_id: str, task_id: str
    ) -> storage.Task | None:
        oid = _object_id(task_id)
        if oid is None:
            return None
        with unavailable_on_outage():
            doc = await self.collection.find_one({"_id": oid})
        assigned = {"tenantId": tenant_id, "assignedBy": owner_id, "deletedAt": None}
        if doc is None or not mongo.matches(doc, assigned):
            return None

        return _task(doc)

    async def search(
        self,
        user: storage.User,
        query: SearchQuery,
        *,
        after: Position | None,
        limit: int,
    ) -> list[storage.Task]:
        conditions: list[dict[str, Any]] = [{**self._owned(user), "deletedAt": None}]
        if query.text is not None:
            pattern = {"$regex": re.escape(query.text), "$options": "i"}
            conditions.append({"$or": [{"title": pattern}, {"notes": pattern}]})
        if query.tags:
            conditions.append({"tags": {"$all": list(query.tags)}})
        for field, value in (
            ("category", query.category),
            ("priority", query.priority),
            ("session", query.session),
        ):
            if value is not None:
                conditions.append({field: str(value)})
        if query.completed is not None:
            conditions.append({"completed": query.completed})
        dates: dict[str, str] = {}
        if query.first is not None:
            dates["$gte"] = query.first
        if query.last is not None:
            dates["$lte"] = query.last
        if dates:
            conditions.append({"taskDate": dates})
        if after is not None:
            after_id = _object_id(after.task_id)
            next_ids = {"_id": {"$gt": after_id}} if after_id else {"_id": None}
            conditions.append(
                {
                    "$or": [
                        {"sortKey": {"$gt": after.sort_key}},
                        {"sortKey": after.sort_key, **next_ids},
                    ]
                }
            )

        with unavailable_on_outage():
            cursor = (
                self.collection.find({"$and": conditions}, projection=_WITHOUT_OUTBOX)
                .sort([("sortKey", ASCENDING), ("_id", ASCENDING)])
                .limit(limit)
            )
            docs = await cursor.to_list()

        return [_task(doc) for doc in docs]

    async def pending_events(self, *, limit: int) -> list[storage.OutboxEntry]:
        with unavailable_on_outage():
            cursor = self.collection.find(
                {"outboxPending": True}, projection={"outbox": True}
            ).limit(limit)
            docs = await cursor.to_list()

        return [
            storage.OutboxEntry(str(doc["_id"]), tuple(doc.get("outbox") or ()))
            for doc in docs
        ]

    async def events_of(self, task_ids: Sequence[str]) -> list[storage.OutboxEntry]:
        # One lookup by `_id` each: FerretDB would scan the collection for `$in`.
        entries = []
        with unavailable_on_outage():
            for task_id in task_ids:
                key = _object_id(task_id)
                if key is None:
                    continue
                doc = await self.collection.find_one(
                    {"_id": key}, projection={"outbox": True, "outboxPending": True}
                )
                if doc is not None and doc.get("outboxPending"):
                    entries.append(
                        storage.OutboxEntry(task_id, tuple(doc.get("outbox") or ()))
                    )

        return entries

    async def drop_events(self, task_id: str, event_ids: Sequence[str]) -> None:
        # NB: FerretDB 1.24 accepts `$pull` with a condition on the elements'
        # fields but removes nothing, so the outbox is read and written back
        # without the published events. Under FerretDB's lock nothing can
        # come in between, so the write goes by `_id` alone; on MongoDB,
        # where the lock is a no-op, it is conditional on `writeSeq` and a
        # write that came in between makes it read again, keeping its event.
        oid = ObjectId(task_id)
        published = set(event_ids)
        with unavailable_on_outage():
            locks = await self._lock_kind()
            for _ in range(_DROP_ATTEMPTS):
                async with locks.hold(str(oid)):
                    doc = await self.collection.find_one({"_id": oid})
                    if doc is None:
                        return
                    remaining = [
                        e
                        for e in doc.get("outbox") or ()
                        if e.get("id") not in published
                    ]
                    unchanged = {"_id": oid}
                    if locks.atomic:
                        unchanged["writeSeq"] = doc.get("writeSeq")
                    result = await self.collection.update_one(
                        unchanged,
                        {
                            "$set": {
                                "outbox": remaining,
                                "outboxPending": bool(remaining),
                            }
                        },
                    )
                if result.matched_count:
                    return

    @staticmethod
    def _owned(user: storage.User) -> dict[str, str]:
        return {"tenantId": user.tenant_id, "userId": user.user_id}

    @classmethod
    def _visible(cls, user: storage.User) -> dict[str, Any]:
        return {**cls._owned(user), "deletedAt": None}
