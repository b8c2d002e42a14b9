"""Storage: the port through which tasks are read and written.

The task service speaks to a `TaskStore`; the outbox relay to an
`OutboxStore`. Tasks cross this port as plain mappings shaped like the task
document of docs/architecture.md (camelCase keys, `_id` as text, datetimes
timezone aware in UTC), so a store needs no model classes to satisfy it: the
MongoDB adapter does, and an SQLite one could.

Every method of a task store is scoped to one user of one tenant, except
the outbox's, which the relay runs across tenants. Every write is one atomic
step on one task, and a store that cannot be reached raises `StoreUnavailable`
so that the caller can answer "try again in a moment" instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tm_domain.errors import DomainError
from tm_domain.search import Position, SearchQuery

Task = dict[str, Any]
"""A task document as docs/architecture.md describes it, `_id` as text."""


class StoreUnavailable(DomainError):
    """The store cannot be reached or did not answer in time; retry after a pause."""


@dataclass(frozen=True)
class User:
    """Whose tasks a call reads or writes: a user of a tenant, from the token."""

    tenant_id: str
    user_id: str


@dataclass(frozen=True)
class OutboxEntry:
    """The events of one task that are not yet published, oldest first."""

    task_id: str
    events: tuple[Mapping[str, Any], ...]


class OutboxStore(Protocol):
    """The events written with tasks and waiting to be published."""

    async def pending_events(self, *, limit: int) -> list[OutboxEntry]:
        """Tasks with unpublished events, across every tenant; at most `limit`."""
        ...

    async def events_of(self, task_ids: Sequence[str]) -> list[OutboxEntry]:
        """The unpublished events of these tasks, for each that has any."""
        ...

    async def drop_events(self, task_id: str, event_ids: Sequence[str]) -> None:
        """Remove published events from a task's outbox.

        Events written since they were read stay; when none is left the task
        no longer counts as pending.
        """
        ...


class TaskStore(OutboxStore, Protocol):
    """Tasks, each with its reminder and its outbox of events, one user at a time."""

    async def prepare(self) -> None:
        """Create what the store needs (indexes, tables); safe to run again."""
        ...

    def new_id(self) -> str:
        """A fresh task id, so that the first event can name the task."""
        ...

    async def insert(self, task: Mapping[str, Any]) -> None:
        """Store a new task; it carries its first event in `outbox`."""
        ...

    async def get(self, user: User, task_id: str) -> Task | None:
        """The user's task, without its outbox; None if absent, deleted or
        if `task_id` is not an id this store could have made."""
        ...

    async def write(
        self,
        user: User,
        task_id: str,
        *,
        write_seq: int,
        changes: Mapping[str, Any],
        event: Mapping[str, Any],
    ) -> Task | None:
        """Apply a user write to a task that is still at `write_seq`.

        In one atomic step: set `changes`, add one to `version` and to
        `writeSeq`, append `event` to the outbox and mark the task pending.
        Returns the task as written, or None when it moved past `write_seq`
        or is gone, in which case nothing changed.
        """
        ...

    async def between(
        self,
        user: User,
        first: str,
        last: str,
        *,
        limit: int,
    ) -> list[Task]:
        """The user's tasks dated `first` to `last` (`YYYY-MM-DD`, both
        included), not deleted, ordered by `sortKey` then `createdAt`."""
        ...

    async def assigned_between(
        self,
        tenant_id: str,
        owner_id: str,
        first: str,
        last: str,
        *,
        member: str | None,
        limit: int,
    ) -> list[Task]:
        """The tasks `owner_id` assigned (to `member`, or to anyone), dated
        `first` to `last`, not deleted, ordered as `between` orders them."""
        ...

    async def get_assigned(
        self, tenant_id: str, owner_id: str, task_id: str
    ) -> Task | None:
        """A task `owner_id` assigned, whoever holds it; None if absent or
        deleted."""
        ...

    async def search(
        self,
        user: User,
        query: SearchQuery,
        *,
        after: Position | None,
        limit: int,
    ) -> list[Task]:
        """The user's tasks, not deleted, that `query` selects
        (`tm_domain.search.matches`), in search order, from just after
        `after`; at most `limit`."""
        ...


@dataclass(frozen=True)
class Removed:
    """What purging one task removed."""

    tasks: int
    deliveries: int


class PrivacyStore(Protocol):
    """A person's data across every collection, for export, erasure and purge.

    Unlike a `TaskStore`, its reads include deleted tasks, and its purge and
    reminder views read across the users of a tenant; only administrators'
    requests reach those.
    """

    collections: Mapping[str, str]
    """Each collection the project writes to, and the export section that
    holds its documents or, when it holds none, why not."""

    async def prepare(self) -> None:
        """Create what the store needs (indexes); safe to run again."""
        ...

    async def tasks_of(self, user: User, *, deleted: bool) -> list[Task]:
        """The user's tasks without outbox; deleted ones too when `deleted`."""
        ...

    async def deliveries_of(self, user: User) -> list[dict[str, Any]]:
        """Every recorded delivery attempt of the user's reminders."""
        ...

    async def audit_of(self, user: User) -> list[dict[str, Any]]:
        """The audit records about the user, oldest first."""
        ...

    async def tenants_with_deletions(self) -> list[str]:
        """The tenants with deleted tasks or erasures not yet purged."""
        ...

    async def memberships_of(self, user: User) -> list[dict[str, Any]]:
        """The team memberships naming the user, as owner or as member."""
        ...

    async def forget_memberships(self, user: User) -> int:
        """Remove the memberships naming the user; how many."""
        ...

    async def record(self, entry: Mapping[str, Any]) -> None:
        """Store a new audit record."""
        ...

    async def amend(self, record_id: str, fields: Mapping[str, Any]) -> None:
        """Set fields of an audit record (its completion, its purge)."""
        ...

    async def expired(
        self, *, before: datetime, tenant_id: str | None, limit: int
    ) -> list[Task]:
        """Tasks deleted at or before `before`, of a tenant or of all; ids,
        tenant, user and `deletedAt` only."""
        ...

    async def remove(self, task_id: str, *, before: datetime) -> Removed:
        """Remove a task deleted at or before `before`, with its delivery
        history; nothing when it is gone or was deleted later."""
        ...

    async def erasures_due(
        self, *, before: datetime, tenant_id: str | None
    ) -> list[dict[str, Any]]:
        """Erasure records whose window ended by `before` and not yet purged."""
        ...

    async def remove_deliveries(self, user: User, *, before: datetime) -> int:
        """Remove the user's delivery history recorded at or before `before`."""
        ...

    async def tenant_tasks(
        self, tenant_id: str, *, user_id: str | None, limit: int
    ) -> list[Task]:
        """Open tasks with a reminder of a tenant, or of one of its users."""
        ...

    async def task_owner(self, tenant_id: str, task_id: str) -> User | None:
        """Who owns an undeleted task of the tenant; None if there is none."""
        ...

    async def tenant_counts(self, tenant_id: str | None) -> list[dict[str, Any]]:
        """Per tenant (one, or every one): users, tasks, deleted tasks."""
        ...

    async def overdue(self, *, before: datetime) -> tuple[int, datetime | None]:
        """Deliveries still scheduled though due before `before`: how many,
        and the earliest due instant (None when there is none)."""
        ...


class TeamStore(Protocol):
    """Who belongs to an owner's team, within one tenant.

    Each membership is a record of its own, added and removed whole, so no
    change needs more than one single-document write.
    """

    async def prepare(self) -> None:
        """Create what the store needs; safe to run again."""
        ...

    async def members(self, tenant_id: str, owner_id: str) -> list[str]:
        """The owner's members, in the order of their ids."""
        ...

    async def is_member(
        self, tenant_id: str, owner_id: str, member_id: str
    ) -> bool: ...

    async def add(self, tenant_id: str, owner_id: str, member_id: str) -> bool:
        """Add a member; False when already one."""
        ...

    async def remove(self, tenant_id: str, owner_id: str, member_id: str) -> bool:
        """Remove a member; False when not one."""
        ...
