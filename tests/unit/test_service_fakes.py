"""Fakes of the service's ports, and tests that they keep the ports' promises.

`MemoryTaskStore` is a `TaskStore` in a dictionary and `RecordingPublisher` a
`Publisher` in a list. The unit tests of the service run on them, so the
tests below check that they behave as docs/architecture.md says the real
store does: conditional writes, one user's tasks only, outbox bookkeeping.
"""

from __future__ import annotations

import contextlib
import copy
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from tests.support import documents
from tm_domain import storage
from tm_service.app import create_app
from tm_service.settings import ServiceSettings

SECRET = "unit-test-secret-that-is-long-enough-0123456789"


class MemoryTaskStore:
    """A TaskStore held in memory; `fail_with` makes every call raise."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.prepared = 0
        self.fail_with: BaseException | None = None
        self.before_write: Any = None

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with

    async def prepare(self) -> None:
        self._check()
        self.prepared += 1

    def new_id(self) -> str:
        return uuid.uuid4().hex[:24]

    async def insert(self, task: Mapping[str, Any]) -> None:
        self._check()
        self.docs[task["_id"]] = copy.deepcopy(dict(task))

    def _owned(self, user: storage.User, task_id: str) -> dict[str, Any] | None:
        doc = self.docs.get(task_id)
        if doc is None or doc.get("deletedAt") is not None:
            return None
        if (doc["tenantId"], doc["userId"]) != (user.tenant_id, user.user_id):
            return None
        return doc

    @staticmethod
    def _public(doc: Mapping[str, Any]) -> storage.Task:
        return copy.deepcopy({k: v for k, v in doc.items() if k != "outbox"})

    async def get(self, user: storage.User, task_id: str) -> storage.Task | None:
        self._check()
        doc = self._owned(user, task_id)
        return None if doc is None else self._public(doc)

    async def write(
        self,
        user: storage.User,
        task_id: str,
        *,
        write_seq: int,
        changes: Mapping[str, Any],
        event: Mapping[str, Any],
    ) -> storage.Task | None:
        self._check()
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook(self.docs[task_id])
        doc = self.docs.get(task_id)
        if doc is None or (doc["tenantId"], doc["userId"]) != (
            user.tenant_id,
            user.user_id,
        ):
            return None
        if doc["writeSeq"] != write_seq:
            return None
        doc.update(copy.deepcopy(dict(changes)))
        doc["version"] += 1
        doc["writeSeq"] += 1
        doc.setdefault("outbox", []).append(dict(event))
        doc["outboxPending"] = True
        return self._public(doc)

    async def between(
        self, user: storage.User, first: str, last: str, *, limit: int
    ) -> list[storage.Task]:
        self._check()
        found = [
            doc
            for doc in self.docs.values()
            if (doc["tenantId"], doc["userId"]) == (user.tenant_id, user.user_id)
            and doc.get("deletedAt") is None
            and first <= doc["taskDate"] <= last
        ]
        found.sort(key=lambda d: (d["sortKey"], d["createdAt"]))
        return [self._public(d) for d in found[:limit]]

    async def pending_events(self, *, limit: int) -> list[storage.OutboxEntry]:
        self._check()
        return [
            storage.OutboxEntry(task_id, tuple(copy.deepcopy(doc["outbox"])))
            for task_id, doc in self.docs.items()
            if doc.get("outboxPending")
        ][:limit]

    async def events_of(self, task_ids: Sequence[str]) -> list[storage.OutboxEntry]:
        self._check()
        return [
            storage.OutboxEntry(task_id, tuple(copy.deepcopy(doc["outbox"])))
            for task_id in task_ids
            if (doc := self.docs.get(task_id)) is not None and doc.get("outboxPending")
        ]

    async def drop_events(self, task_id: str, event_ids: Sequence[str]) -> None:
        self._check()
        doc = self.docs[task_id]
        doc["outbox"] = [e for e in doc["outbox"] if e["id"] not in set(event_ids)]
        doc["outboxPending"] = bool(doc["outbox"])


class RecordingPublisher:
    """A Publisher that keeps what it is given; `down` makes it unreachable."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes]] = []
        self.down = False
        self.refuse: set[int] = set()
        self.closed = False

    async def publish(self, records: Sequence[tuple[str, bytes]]) -> list[bool]:
        if self.down:
            raise ConnectionError("broker down")
        results = []
        for position, record in enumerate(records):
            accepted = position not in self.refuse
            if accepted:
                self.records.append(record)
            results.append(accepted)
        return results

    async def ready(self) -> bool:
        return not self.down

    async def close(self) -> None:
        self.closed = True


def settings(**overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "redis_url": "redis://127.0.0.1:1/0",
        "kafka_bootstrap": "127.0.0.1:1",
        "readiness_timeout_ms": 200,
        "outbox_relay_interval_ms": 50,
    }
    values.update(overrides)
    return ServiceSettings(**values)


@contextlib.asynccontextmanager
async def serve(
    app: FastAPI | None = None,
    *,
    store: MemoryTaskStore | None = None,
    publisher: RecordingPublisher | None = None,
) -> AsyncIterator[httpx.AsyncClient]:
    """A started app on fakes, and an HTTP client talking to it."""
    if app is None:
        app = create_app(
            settings(),
            store=store or MemoryTaskStore(),
            publisher=publisher or RecordingPublisher(),
        )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tm") as http:
            yield http


def token(
    *,
    sub: str | None = "user-a",
    tenant: str | None = "tenant-1",
    role: str | None = "visitor",
    expires_in: int = 3600,
    secret: str = SECRET,
    algorithm: str = "HS256",
    **extra: Any,
) -> str:
    claims: dict[str, Any] = {"exp": int(time.time()) + expires_in, **extra}
    for name, value in (("sub", sub), ("tenant", tenant), ("role", role)):
        if value is not None:
            claims[name] = value
    return jwt.encode(claims, secret, algorithm=algorithm)


def bearer(**claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(**claims)}"}


def body(**overrides: Any) -> dict[str, Any]:
    return documents.design_example(**overrides)


ALICE = storage.User(tenant_id="tenant-1", user_id="user-a")
BOB = storage.User(tenant_id="tenant-1", user_id="user-b")


def stored_task(store: MemoryTaskStore, user: storage.User = ALICE) -> str:
    task_id = store.new_id()
    now = datetime(2030, 1, 1, tzinfo=UTC)
    store.docs[task_id] = {
        "_id": task_id,
        "tenantId": user.tenant_id,
        "userId": user.user_id,
        "taskDate": "2030-01-15",
        "sortKey": "2030-01-15|0|09:00",
        "createdAt": now,
        "version": 1,
        "writeSeq": 1,
        "deletedAt": None,
        "outbox": [{"id": "e1"}],
        "outboxPending": True,
    }
    return task_id


async def test_memory_store_writes_only_at_the_write_seq_read() -> None:
    store = MemoryTaskStore()
    task_id = stored_task(store)

    stale = await store.write(
        ALICE, task_id, write_seq=0, changes={"title": "x"}, event={"id": "e2"}
    )
    fresh = await store.write(
        ALICE, task_id, write_seq=1, changes={"title": "x"}, event={"id": "e2"}
    )

    assert stale is None
    assert fresh is not None
    assert (fresh["version"], fresh["writeSeq"], fresh["title"]) == (2, 2, "x")
    assert [e["id"] for e in store.docs[task_id]["outbox"]] == ["e1", "e2"]


async def test_memory_store_hides_other_users_tasks() -> None:
    store = MemoryTaskStore()
    task_id = stored_task(store)

    assert await store.get(BOB, task_id) is None
    assert await store.between(BOB, "2030-01-01", "2030-12-31", limit=10) == []
    assert await store.get(ALICE, task_id) is not None


async def test_memory_store_drops_published_events_and_clears_pending() -> None:
    store = MemoryTaskStore()
    task_id = stored_task(store)

    await store.drop_events(task_id, ["e1"])

    assert store.docs[task_id]["outbox"] == []
    assert store.docs[task_id]["outboxPending"] is False
    assert await store.pending_events(limit=10) == []
