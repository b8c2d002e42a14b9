"""The privacy service: a person's data exported, erased and, later, purged.

Erasure deletes each of the person's tasks through the task service, exactly
as a user deleting one task would: in one conditional write under the task's
lock it sets `deletedAt`, cancels the reminder's open deliveries and stores a
`TaskDeleted` event for the worker. A worker that already holds a delivery in
memory then fails to claim it, because a claim requires the task undeleted.
The documents stay for `retention_days`; `purge` removes what is older.

Every request leaves an audit record (`tm_domain.privacy.audit_record`) with
counts and ids, never a title, note, phone number or e-mail address.

This module raises the domain's errors and knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from tm_domain import privacy, reminders, storage
from tm_domain.errors import NotFound
from tm_domain.privacy import Actor, AuditAction
from tm_domain.tenants import Tenant
from tm_service.tasks import TaskService, utc_now

log = logging.getLogger(__name__)

# New tasks may arrive while an erasure runs; it goes round again for them,
# this many times at most.
_ERASE_ROUNDS = 3

NOT_INCLUDED = [
    {
        "what": "task events on the Kafka topic",
        "why": (
            "copies of task ids, user ids and due times, without titles or "
            "contact details, kept only for the topic's retention period "
            "and then discarded by Kafka"
        ),
    },
    {
        "what": "service and worker logs",
        "why": (
            "they carry request ids, tenant and task ids, never titles, phone "
            "numbers or e-mail addresses, and are kept by the log platform "
            "for its own retention period"
        ),
    },
    {
        "what": "records kept by Twilio and SendGrid",
        "why": (
            "the providers keep their own logs of the messages they carried; "
            "the provider message ids in this export identify them in a "
            "request to the provider"
        ),
    },
    {
        "what": "database backups",
        "why": (
            "backups are restored only to recover from a failure, and expire "
            "on the backup schedule; erased data is erased again after a restore"
        ),
    },
]


def _iso(value: Any) -> Any:
    """A stored value as JSON can carry it: instants as ISO 8601 in UTC."""
    if isinstance(value, datetime):
        utc = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return utc.astimezone(UTC).isoformat()
    if isinstance(value, Mapping):
        return {str(k): _iso(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_iso(v) for v in value]
    if not isinstance(value, str | int | float | bool | type(None)):
        return str(value)

    return value


def _without_leases(task: Mapping[str, Any]) -> dict[str, Any]:
    # A lease names a worker and its deadline: machinery, not the person's data.
    reminder = task.get("reminder")
    if not isinstance(reminder, Mapping):
        return dict(task)
    deliveries = {
        channel: {k: v for k, v in d.items() if k not in ("leaseOwner", "leaseUntil")}
        for channel, d in (reminder.get("deliveries") or {}).items()
    }

    return {**task, "reminder": {**reminder, "deliveries": deliveries}}


@dataclass
class Purged:
    """What a purge removed, or would remove in a dry run."""

    tasks: int = 0
    deliveries: int = 0
    erasures_completed: int = 0
    remaining: bool = False
    by_tenant: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "deliveries": self.deliveries,
            "erasuresCompleted": self.erasures_completed,
            "remaining": self.remaining,
        }


class TenantRetention(Protocol):
    """Where a tenant's own retention is registered (by the operator)."""

    async def get(self, tenant_id: str) -> Tenant | None: ...


class PrivacyService:
    def __init__(
        self,
        store: storage.PrivacyStore,
        tasks: TaskService,
        *,
        retention_days: int = privacy.RETENTION_DAYS_DEFAULT,
        tenants: TenantRetention | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """`retention_days` holds for tenants that `tenants` (the operator's
        registrations) sets none for."""
        self.store = store
        self.tasks = tasks
        self.retention_days = retention_days
        self.tenants = tenants
        self.clock = clock

    async def retention_of(self, tenant_id: str) -> int:
        """Days a tenant's deleted data stays: its own setting, or the default."""
        if self.tenants is not None:
            tenant = await self.tenants.get(tenant_id)
            if tenant is not None:
                return tenant.data_retention_days
        return self.retention_days

    async def export(
        self,
        user: storage.User,
        *,
        actor: Actor,
        request_id: str | None = None,
        must_exist: bool = False,
    ) -> dict[str, Any]:
        """Everything stored about `user`, as the documented export format.

        `must_exist`: raise NotFound when nothing at all is stored, which is
        how an administrator learns of a mistyped user id.
        """
        tasks = [
            _without_leases(t) for t in await self.store.tasks_of(user, deleted=True)
        ]
        deliveries = await self.store.deliveries_of(user)
        audit = await self.store.audit_of(user)
        if must_exist and not (tasks or deliveries or audit):
            raise NotFound(user.user_id, message="no data stored for this user")
        now = self.clock()

        memberships = await self.store.memberships_of(user)
        sections = {
            "tasks": tasks,
            "reminderDeliveries": deliveries,
            "teamMemberships": memberships,
            "auditTrail": audit,
        }
        document = {
            "format": privacy.EXPORT_FORMAT,
            "formatVersion": privacy.EXPORT_FORMAT_VERSION,
            "exportedAt": now,
            "subject": {"tenantId": user.tenant_id, "userId": user.user_id},
            "retentionDays": await self.retention_of(user.tenant_id),
            **sections,
            "collections": {
                name: (
                    {"section": where, "documents": len(sections[where])}
                    if where in sections
                    else {"section": None, "reason": where}
                )
                for name, where in self.store.collections.items()
            },
            "notIncluded": NOT_INCLUDED,
        }

        await self.store.record(
            privacy.audit_record(
                AuditAction.EXPORTED,
                record_id=uuid.uuid4().hex,
                tenant_id=user.tenant_id,
                user_id=user.user_id,
                actor=actor,
                at=now,
                request_id=request_id,
                counts={name: len(docs) for name, docs in sections.items()},
            )
        )

        return dict(_iso(document))

    async def erase(
        self,
        user: storage.User,
        *,
        actor: Actor,
        request_id: str | None = None,
        dry_run: bool = False,
        must_exist: bool = False,
    ) -> dict[str, Any]:
        """Delete every task of `user` softly and cancel its open reminders."""
        found = await self.store.tasks_of(user, deleted=True)
        if must_exist and not found:
            raise NotFound(user.user_id, message="no tasks stored for this user")
        open_tasks = [t for t in found if t.get("deletedAt") is None]
        now = self.clock()
        retention_days = await self.retention_of(user.tenant_id)
        purge_after = privacy.purge_after(now, retention_days=retention_days)
        summary: dict[str, Any] = {
            "tenantId": user.tenant_id,
            "userId": user.user_id,
            "dryRun": dry_run,
            "tasks": len(open_tasks),
            "alreadyDeleted": len(found) - len(open_tasks),
            "remindersCancelled": sum(
                len(reminders.scheduled(t.get("reminder"))) for t in open_tasks
            ),
            "purgeAfter": purge_after.isoformat(),
        }
        if dry_run:
            return summary

        # The record first: a request that fails half-way is still on file,
        # without `completedAt`, and running it again finishes it.
        record_id = uuid.uuid4().hex
        await self.store.record(
            privacy.audit_record(
                AuditAction.ERASED,
                record_id=record_id,
                tenant_id=user.tenant_id,
                user_id=user.user_id,
                actor=actor,
                at=now,
                request_id=request_id,
                dryRun=False,
                retentionDays=retention_days,
                purgeAfter=purge_after,
                completedAt=None,
                purgedAt=None,
            )
        )

        erased = 0
        cancelled = 0
        for _ in range(_ERASE_ROUNDS):
            for task in open_tasks:
                try:
                    await self.tasks.delete(user, task["_id"], erasing=True)
                except NotFound:
                    continue  # deleted meanwhile, by the user or another request
                erased += 1
                cancelled += len(reminders.scheduled(task.get("reminder")))
            open_tasks = await self.store.tasks_of(user, deleted=False)
            if not open_tasks:
                break

        memberships = await self.store.forget_memberships(user)
        counts = {
            "tasks": erased,
            "remindersCancelled": cancelled,
            "teamMemberships": memberships,
        }
        await self.store.amend(
            record_id, {"completedAt": self.clock(), "counts": counts}
        )
        log.info(
            "data erased",
            extra={"tenant_id": user.tenant_id, "record_id": record_id, **counts},
        )

        return {**summary, **counts, "auditRecord": record_id}

    async def purge(
        self,
        *,
        tenant_id: str | None,
        actor: Actor,
        request_id: str | None = None,
        dry_run: bool = False,
        limit: int = 500,
    ) -> Purged:
        """Remove what was deleted more than its tenant's retention ago.

        At most `limit` tasks per tenant and call; `remaining` says whether
        more are waiting. `tenant_id` None purges every tenant (the periodic
        job), each by its own retention.
        """
        now = self.clock()
        purged = Purged()
        tenants = (
            [tenant_id]
            if tenant_id is not None
            else await self.store.tenants_with_deletions()
        )
        for tenant in tenants:
            await self._purge_tenant(
                tenant, purged, now=now, dry_run=dry_run, limit=limit
            )

        if not dry_run:
            for tenant, (tasks_removed, deliveries_removed) in purged.by_tenant.items():
                await self.store.record(
                    privacy.audit_record(
                        AuditAction.PURGED,
                        record_id=uuid.uuid4().hex,
                        tenant_id=tenant,
                        user_id=None,
                        actor=actor,
                        at=now,
                        request_id=request_id,
                        counts={
                            "tasks": tasks_removed,
                            "deliveries": deliveries_removed,
                        },
                    )
                )

        return purged

    async def _purge_tenant(
        self,
        tenant_id: str,
        purged: Purged,
        *,
        now: datetime,
        dry_run: bool,
        limit: int,
    ) -> None:
        retention_days = await self.retention_of(tenant_id)
        cutoff = privacy.purge_cutoff(now, retention_days=retention_days)

        expired = await self.store.expired(
            before=cutoff, tenant_id=tenant_id, limit=limit + 1
        )
        purged.remaining = purged.remaining or len(expired) > limit
        for task in expired[:limit]:
            if dry_run:
                removed = storage.Removed(tasks=1, deliveries=0)
            else:
                removed = await self.store.remove(task["_id"], before=cutoff)
            purged.tasks += removed.tasks
            purged.deliveries += removed.deliveries
            tally = purged.by_tenant.setdefault(str(task["tenantId"]), [0, 0])
            tally[0] += removed.tasks
            tally[1] += removed.deliveries

        # Erasures whose window ended: the history recorded up to the
        # request goes too, even of tasks already gone, and the record says
        # when the purge happened. Not while tasks of this round remain.
        if len(expired) <= limit:
            for erasure in await self.store.erasures_due(
                before=now, tenant_id=tenant_id
            ):
                if dry_run:
                    purged.erasures_completed += 1
                    continue
                user = storage.User(erasure["tenantId"], erasure["userId"])
                history = await self.store.remove_deliveries(user, before=erasure["at"])
                await self.store.amend(erasure["_id"], {"purgedAt": now})
                purged.deliveries += history
                purged.erasures_completed += 1
                tally = purged.by_tenant.setdefault(user.tenant_id, [0, 0])
                tally[1] += history

    async def reminder_rows(
        self,
        tenant_id: str,
        *,
        user_id: str | None,
        status: str | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The tenant's reminders of undeleted tasks, as administrators see them."""
        found = await self.store.tenant_tasks(tenant_id, user_id=user_id, limit=limit)
        rows = []
        for task in found:
            reminder = task.get("reminder") or {}
            summary = reminders.summarize(reminder)
            shown = None if summary.status is None else str(summary.status)
            if status is not None and shown != status:
                continue
            rows.append(
                {
                    "taskId": task["_id"],
                    "userId": task["userId"],
                    "status": shown,
                    "channels": list(reminder.get("channels") or ()),
                    "sendAt": _iso(reminder.get("sendAt")),
                    "revision": reminder.get("revision"),
                    "attempts": summary.attempts,
                    "lastError": summary.last_error,
                    "deliveries": {
                        channel: d.get("state")
                        for channel, d in (reminder.get("deliveries") or {}).items()
                    },
                }
            )

        return rows

    async def retry_reminder(
        self,
        tenant_id: str,
        task_id: str,
        *,
        actor: Actor,
        request_id: str | None = None,
    ) -> storage.Task:
        """Schedule a task's failed deliveries again, due now."""
        owner = await self.store.task_owner(tenant_id, task_id)
        if owner is None:
            raise NotFound(task_id)
        task = await self.tasks.retry_reminder(owner, task_id)
        await self.store.record(
            privacy.audit_record(
                AuditAction.REMINDER_RETRIED,
                record_id=uuid.uuid4().hex,
                tenant_id=tenant_id,
                user_id=owner.user_id,
                actor=actor,
                at=self.clock(),
                request_id=request_id,
                taskId=task_id,
            )
        )

        return task


class PurgeJob:
    """The periodic purge of every tenant, beside the API."""

    def __init__(self, service: PrivacyService, *, interval_s: float) -> None:
        self.service = service
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        # NB: the first turn waits a whole interval, so a service that starts
        # and stops at once (tests, a crash loop) never purges half-way.
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                while (
                    await self.service.purge(tenant_id=None, actor=privacy.SCHEDULE)
                ).remaining:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                # The store is down or slow: the next turn tries again.
                log.warning("periodic purge failed", exc_info=True)

    def start(self) -> None:
        if self._task is None and self.interval_s > 0:
            self._task = asyncio.create_task(self.run(), name="privacy-purge")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)
