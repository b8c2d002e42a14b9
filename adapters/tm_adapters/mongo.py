"""Opening MongoDB, and keeping single-document writes atomic on FerretDB too.

The client is pymongo's native asyncio client. It is timezone aware, so every
datetime read back carries UTC, and its timeouts come from the settings so a
server that is down fails a call in seconds instead of hanging a request.

NB: FerretDB 1.24 does not apply an update atomically. It reads the matching
document, applies the operators, and writes the whole document back, so two
concurrent updates of one document can both match a condition such as
`{"writeSeq": 7}` and the second overwrites the first (measured: 200
concurrent `$inc` left 23). Its inserts are atomic, though: a duplicate `_id`
fails. `DocumentLocks` builds a lease-based lock per document on that, and
every writer of a shared document must hold it around its read-and-update.
`locks_for` gives real locks on FerretDB and no-op ones on MongoDB, whose
updates are atomic.

The locks of the task documents live in `task_write_locks`, one document per
locked task: `_id` the task id as text, `token` the holder's, `until` the end
of its lease. The API, its outbox relay and the reminder worker all take them,
so they exclude one another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from tm_adapters.settings import ConnectionSettings
from tm_domain import storage

Document = dict[str, Any]

LOCKS_COLLECTION = "task_write_locks"

log = logging.getLogger(__name__)


def open_client(
    settings: ConnectionSettings, *, keep_open: int = 0
) -> AsyncMongoClient[Document]:
    """A client for `settings.mongodb_uri`; it connects lazily, on the first call.

    `keep_open`: connections the client opens ahead of need and keeps, for a
    caller whose load comes in bursts. The driver opens only two at a time,
    so a burst of calls on a cold pool queues behind the handshakes of the
    connections it needs.
    """
    timeout_ms = settings.mongodb_timeout_ms
    return AsyncMongoClient(
        settings.mongodb_uri,
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        socketTimeoutMS=timeout_ms,
        minPoolSize=keep_open,
        appname="time-manager",
    )


def database(
    client: AsyncMongoClient[Document],
    settings: ConnectionSettings,
) -> AsyncDatabase[Document]:
    """The application's database on `client`, named by `settings.mongodb_database`."""
    return client[settings.mongodb_database]


async def is_ferretdb(db: AsyncDatabase[Document]) -> bool:
    """Whether the server is FerretDB, which says so in `buildInfo`."""
    info = await db.client.server_info()
    return "ferretdbVersion" in info


class Locks(Protocol):
    atomic: bool
    """Whether the server applies a conditional update atomically by itself."""

    def hold(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold the lock named `key` for the duration of the block."""
        ...


class NoLocks:
    """For servers whose single-document updates are atomic: nothing to do."""

    atomic = True

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        yield


class DocumentLocks:
    """A lock per key, as a document whose `_id` is the key.

    Taking the lock inserts the document; only one insert of an `_id` can
    succeed. Releasing deletes it. A holder that died leaves its lock until
    `lease` has passed, after which the next writer takes it over. Within one
    process, writers of a key queue on an asyncio lock first instead of
    polling the database for each other.
    """

    atomic = False

    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        lease: timedelta = timedelta(seconds=10),
        wait: timedelta = timedelta(seconds=5),
    ) -> None:
        self.collection = db[LOCKS_COLLECTION]
        self.lease = lease
        """Longer than any read-and-update takes; then a lock counts as abandoned."""
        self.wait = wait
        """How long to wait for a lock before giving up with StoreUnavailable."""
        self._local: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, int] = {}
        self._writers = asyncio.Semaphore(1)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        local = self._local.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            try:
                async with asyncio.timeout(self.wait.total_seconds()):
                    await local.acquire()
            except TimeoutError:
                raise storage.StoreUnavailable(f"lock {key} stayed busy") from None
            try:
                # One write at a time from this process: SQLite takes one
                # writer at a time anyway, and writers that queue in its busy
                # handler instead of here wait in sleeps of up to 100 ms.
                async with self._writers:
                    token = uuid.uuid4().hex
                    await self._acquire(key, token)
                    try:
                        yield
                    finally:
                        await self._release(key, token)
            finally:
                local.release()
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:
                del self._waiting[key], self._local[key]

    async def _acquire(self, key: str, token: str) -> None:
        deadline = time.monotonic() + self.wait.total_seconds()
        pause = 0.002
        while True:
            now = datetime.now(UTC)
            try:
                await self.collection.insert_one(
                    {"_id": key, "token": token, "until": now + self.lease}
                )
                return
            except DuplicateKeyError:
                pass

            # Held: by a live writer, wait; by a dead one, take it over.
            held = await self.collection.find_one({"_id": key})
            if held is not None and _utc(held["until"]) <= now:
                log.warning("taking over an abandoned lock", extra={"key": key})
                await self.collection.delete_one({"_id": key, "token": held["token"]})
                continue
            if time.monotonic() > deadline:
                raise storage.StoreUnavailable(f"lock {key} stayed busy")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    async def _release(self, key: str, token: str) -> None:
        try:
            await self.collection.delete_one({"_id": key, "token": token})
        except asyncio.CancelledError:
            raise
        except Exception:
            # The lock stays until its lease ends; the next writer waits that long.
            log.warning("lock not released", extra={"key": key}, exc_info=True)


def _utc(value: datetime) -> datetime:
    # A client without tz_aware reads datetimes back naive, in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def locks_for(db: AsyncDatabase[Document]) -> Locks:
    """Per-document locks if the server needs them (FerretDB), else no-ops."""
    if await is_ferretdb(db):
        return DocumentLocks(db)
    return NoLocks()


async def update_where(
    collection: AsyncCollection[Document],
    key: Any,
    condition: Mapping[str, Any],
    update: Mapping[str, Any],
    *,
    locks: Locks,
    before: bool = False,
) -> Document | None:
    """Update the document `_id == key` if it matches `condition`.

    Returns the document after the update (`before`: as it was before it,
    which spares FerretDB a write that also reads), or None when it did not
    match. On MongoDB this is one `findAndModify`. FerretDB 1.24 pushes only a
    bare `{_id: ...}` filter down to SQLite and scans the whole collection for
    any other, and applies updates non-atomically; there the document is read
    by `_id` under its lock, `condition` is checked here, and the update is
    written by `_id`, which is both correct and a single-row lookup.
    """
    if locks.atomic:
        return await collection.find_one_and_update(
            {**condition, "_id": key},
            update,
            return_document=ReturnDocument.BEFORE if before else ReturnDocument.AFTER,
        )

    async with locks.hold(str(key)):
        current = await collection.find_one({"_id": key})
        if current is None or not matches(current, condition):
            return None
        if before:
            await collection.update_one({"_id": key}, update)
            return current
        return await collection.find_one_and_update(
            {"_id": key}, update, return_document=ReturnDocument.AFTER
        )


def matches(document: Mapping[str, Any], condition: Mapping[str, Any]) -> bool:
    """Whether `document` satisfies a MongoDB filter of the kinds we write.

    Dotted paths; a plain value means equality, and None also matches a
    missing field, as in MongoDB; operators `$lt $lte $gt $gte $in $ne`.
    """
    for path, wanted in condition.items():
        value = _lookup(document, path)
        if (
            isinstance(wanted, Mapping)
            and wanted
            and next(iter(wanted)).startswith("$")
        ):
            if not all(_compare(value, op, arg) for op, arg in wanted.items()):
                return False
        elif _normal(value) != _normal(wanted):
            return False

    return True


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _normal(value: Any) -> Any:
    # Stored datetimes may come back naive (in UTC) or aware.
    return _utc(value) if isinstance(value, datetime) else value


def _compare(value: Any, op: str, arg: Any) -> bool:
    value, arg = _normal(value), _normal(arg)
    if op == "$ne":
        return bool(value != arg)
    if op == "$in":
        return value in [_normal(a) for a in arg]
    if value is None:
        return False
    if op == "$lt":
        return bool(value < arg)
    if op == "$lte":
        return bool(value <= arg)
    if op == "$gt":
        return bool(value > arg)
    if op == "$gte":
        return bool(value >= arg)
    raise ValueError(f"operator {op} is not supported here")
