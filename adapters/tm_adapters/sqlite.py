"""SQLite for the single-process mode: one file, one connection, one thread.

`Database` opens the file on a thread of its own and runs every call there,
so the event loop never waits on the disk. A call is a plain function of a
`sqlite3.Connection`, run inside a transaction: `read` in a deferred one, so
that it sees one state of the file throughout, and `write` in `BEGIN
IMMEDIATE`, which takes the write lock before the first read, so that a
read, a decision and a write are one atomic step against every other
connection to the file, in this process or in another.

A task is stored whole, as the document docs/architecture.md describes, in
JSON, beside the few columns its queries filter and sort on. Its scheduled
deliveries are copied into `reminder_schedule` by the same transaction as
every write of the task (`put_task`), so due deliveries are found by index
and the copy can never disagree with the document.

JSON has no instants: a datetime is written as `{"$date": "<ISO 8601>"}` in
UTC and read back timezone aware, to the millisecond, as MongoDB keeps it,
so both stores give back equal values.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from tm_domain import storage
from tm_domain.reminders import DeliveryState

log = logging.getLogger(__name__)

T = TypeVar("T")
Document = dict[str, Any]

TASKS = "visitor_time_tasks"
SCHEDULE = "reminder_schedule"
CLAIMS = "reminder_claims"
DELIVERIES = "reminder_deliveries"
AUDIT = "privacy_audit"
MEMBERSHIPS = "owner_team_members"

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS visitor_time_tasks (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    task_date TEXT,
    sort_key TEXT,
    created_at TEXT,
    deleted_at TEXT,
    outbox_pending INTEGER NOT NULL DEFAULT 0,
    document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_by_user_date
    ON visitor_time_tasks (tenant_id, user_id, task_date);
CREATE INDEX IF NOT EXISTS tasks_by_tenant ON visitor_time_tasks (tenant_id, user_id);
CREATE INDEX IF NOT EXISTS tasks_with_events
    ON visitor_time_tasks (outbox_pending) WHERE outbox_pending = 1;
CREATE INDEX IF NOT EXISTS tasks_deleted
    ON visitor_time_tasks (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS reminder_schedule (
    task_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    position INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    due_at TEXT NOT NULL,
    open INTEGER NOT NULL,
    PRIMARY KEY (task_id, channel)
);
CREATE INDEX IF NOT EXISTS schedule_by_due ON reminder_schedule (due_at);

CREATE TABLE IF NOT EXISTS reminder_claims (
    id TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    owner TEXT NOT NULL,
    task_id TEXT NOT NULL,
    revision INTEGER NOT NULL,
    channel TEXT NOT NULL,
    claimed_at TEXT NOT NULL,
    lease_until TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_by_lease ON reminder_claims (lease_until);

CREATE TABLE IF NOT EXISTS reminder_deliveries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT,
    user_id TEXT,
    task_id TEXT NOT NULL,
    at TEXT NOT NULL,
    document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deliveries_by_user
    ON reminder_deliveries (tenant_id, user_id, task_id);
CREATE INDEX IF NOT EXISTS deliveries_by_task ON reminder_deliveries (task_id);

CREATE TABLE IF NOT EXISTS privacy_audit (
    id TEXT PRIMARY KEY,
    tenant_id TEXT,
    user_id TEXT,
    at TEXT,
    document TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_user ON privacy_audit (tenant_id, user_id);

CREATE TABLE IF NOT EXISTS owner_team_members (
    tenant_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    member_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, owner_id, member_id)
);
CREATE INDEX IF NOT EXISTS memberships_by_member
    ON owner_team_members (tenant_id, member_id);
"""

_TASK_ID = re.compile(r"[0-9a-fA-F]{24}")


class Database:
    """One SQLite file, reached through one connection on one thread."""

    def __init__(
        self, path: Path, *, busy_timeout: timedelta = timedelta(seconds=5)
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        """How long a write waits for another process's transaction to end."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._connection: sqlite3.Connection | None = None
        self._prepared = False

    async def read(self, call: Callable[[sqlite3.Connection], T]) -> T:
        """Run `call` on the database thread, in a read transaction."""
        return await self._submit(call, "BEGIN")

    async def write(self, call: Callable[[sqlite3.Connection], T]) -> T:
        """Run `call` on the database thread, in a transaction that holds the
        write lock from its start; an exception rolls all of it back."""
        return await self._submit(call, "BEGIN IMMEDIATE")

    async def prepare(self) -> None:
        """Create the tables and indexes; safe to run again."""
        if not self._prepared:
            await self._submit(_create_schema, "BEGIN IMMEDIATE")
            self._prepared = True

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the file can be read."""
        await self.read(lambda connection: connection.execute("SELECT 1").fetchone())

    async def close(self) -> None:
        """Close the connection; calls after this fail."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    async def _submit(self, call: Callable[[sqlite3.Connection], T], begin: str) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, call, begin)

    def _run(self, call: Callable[[sqlite3.Connection], T], begin: str) -> T:
        try:
            connection = self._connected()
            connection.execute(begin)
            try:
                result = call(connection)
            except BaseException:
                connection.rollback()
                raise
            connection.commit()
        except sqlite3.IntegrityError:
            # A broken constraint is the caller's to read (a claim taken twice).
            raise
        except sqlite3.DatabaseError as exc:
            # Locked past the busy timeout, a full disk, an unreadable file:
            # nothing was written; the caller answers "try again later".
            raise storage.StoreUnavailable(f"SQLite: {exc}") from exc

        return result

    def _connected(self) -> sqlite3.Connection:
        if self._connection is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout.total_seconds(),
                isolation_level=None,
            )
            # WAL lets readers go on beside the writer; FULL makes a write
            # the API acknowledged survive a power cut, not only a crash.
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            self._connection = connection

        return self._connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _create_schema(connection: sqlite3.Connection) -> None:
    (found,) = connection.execute("PRAGMA user_version").fetchone()
    if found > SCHEMA_VERSION:
        raise storage.StoreUnavailable(
            f"the database was written by a newer version (schema {found})"
        )
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            connection.execute(statement)
    connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# ---------------------------------------------------------------------------
# Documents as JSON, with instants.
# ---------------------------------------------------------------------------


def instant(value: datetime) -> str:
    """An instant as stored: ISO 8601 in UTC to the millisecond, which also
    sorts as text. A naive datetime is read as UTC, as MongoDB reads it."""
    utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return utc.isoformat(timespec="milliseconds")


def _encode_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$date": instant(value)}
    raise TypeError(f"{type(value).__name__} cannot be stored")


def _decode_object(pairs: dict[str, Any]) -> Any:
    if len(pairs) == 1 and isinstance(pairs.get("$date"), str):
        return datetime.fromisoformat(pairs["$date"])
    return pairs


def encode(document: Mapping[str, Any]) -> str:
    return json.dumps(document, default=_encode_value, separators=(",", ":"))


def decode(text: str) -> Document:
    decoded: Document = json.loads(text, object_hook=_decode_object)
    return decoded


def lookup(document: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path; None when any part of it is missing."""
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]

    return value


def assign(document: Document, path: str, value: Any) -> None:
    """Set the value at a dotted path, creating the objects on the way."""
    *parents, last = path.split(".")
    target = document
    for part in parents:
        child = target.get(part)
        if not isinstance(child, dict):
            child = target[part] = {}
        target = child
    target[last] = value


def same_instant(left: Any, right: datetime) -> bool:
    return isinstance(left, datetime) and instant(left) == instant(right)


def at_or_before(value: Any, limit: datetime) -> bool:
    """Whether `value` is an instant no later than `limit`; False for None."""
    return isinstance(value, datetime) and instant(value) <= instant(limit)


# ---------------------------------------------------------------------------
# Task rows: the document and its copies, always written together.
# ---------------------------------------------------------------------------


def new_task_id() -> str:
    """A task id shaped as MongoDB's: seconds since the epoch, then randomness,
    24 hex digits that sort in the order the tasks were made."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"


def task_key(task_id: str) -> str | None:
    """The stored form of a task id, or None if no task can have it."""
    return task_id.lower() if _TASK_ID.fullmatch(task_id) else None


def read_task(connection: sqlite3.Connection, task_id: str) -> Document | None:
    """The whole stored document of a task, outbox included."""
    key = task_key(task_id)
    if key is None:
        return None
    row = connection.execute(
        "SELECT document FROM visitor_time_tasks WHERE id = ?", (key,)
    ).fetchone()

    return None if row is None else decode(row[0])


def read_tasks(
    connection: sqlite3.Connection, where: str, parameters: tuple[Any, ...] = ()
) -> Iterator[Document]:
    """The documents of the tasks a WHERE clause (with its ORDER BY) selects.

    `where` is written by the stores of this package, never from input: every
    value in it is a `?` bound from `parameters`.
    """
    # The clause is ours, its values bound parameters (see above).
    query = "SELECT document FROM visitor_time_tasks WHERE " + where  # noqa: S608
    for (text,) in connection.execute(query, parameters):
        yield decode(text)


def put_task(connection: sqlite3.Connection, document: Mapping[str, Any]) -> None:
    """Store a task document, new or changed, and its scheduled deliveries."""
    key = task_key(str(document["_id"]))
    if key is None:
        raise ValueError(f"not a task id: {document['_id']!r}")
    stored = {**document, "_id": key}
    created = stored.get("createdAt")
    deleted = stored.get("deletedAt")
    connection.execute(
        """INSERT INTO visitor_time_tasks (id, tenant_id, user_id, task_date, sort_key,
                created_at, deleted_at, outbox_pending, document)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET
                tenant_id = excluded.tenant_id, user_id = excluded.user_id,
                task_date = excluded.task_date, sort_key = excluded.sort_key,
                created_at = excluded.created_at, deleted_at = excluded.deleted_at,
                outbox_pending = excluded.outbox_pending,
                document = excluded.document""",
        (
            key,
            stored["tenantId"],
            stored["userId"],
            stored.get("taskDate"),
            stored.get("sortKey"),
            instant(created) if isinstance(created, datetime) else None,
            instant(deleted) if isinstance(deleted, datetime) else None,
            1 if stored.get("outboxPending") else 0,
            encode(stored),
        ),
    )

    # The schedule: every scheduled delivery of an undeleted task, `open`
    # while the reminder may still go out.
    connection.execute("DELETE FROM reminder_schedule WHERE task_id = ?", (key,))
    reminder = stored.get("reminder")
    if deleted is not None or not isinstance(reminder, Mapping):
        return
    is_open = not stored.get("completed") and bool(reminder.get("enabled"))
    deliveries = reminder.get("deliveries") or {}
    for position, (channel, delivery) in enumerate(deliveries.items()):
        due_at = delivery.get("dueAt")
        if delivery.get("state") != DeliveryState.SCHEDULED or not isinstance(
            due_at, datetime
        ):
            continue
        connection.execute(
            """INSERT INTO reminder_schedule
                    (task_id, channel, position, revision, due_at, open)
                VALUES (?, ?, ?, ?, ?, ?)""",
            (
                key,
                channel,
                position,
                int(reminder.get("revision") or 0),
                instant(due_at),
                1 if is_open else 0,
            ),
        )


def delete_task(connection: sqlite3.Connection, task_id: str) -> int:
    """Remove a task and its schedule; how many tasks went (0 or 1)."""
    key = task_key(task_id)
    if key is None:
        return 0
    connection.execute("DELETE FROM reminder_schedule WHERE task_id = ?", (key,))
    removed = connection.execute("DELETE FROM visitor_time_tasks WHERE id = ?", (key,))

    return removed.rowcount


def without(document: Mapping[str, Any], *fields: str) -> Document:
    return {key: value for key, value in document.items() if key not in fields}
