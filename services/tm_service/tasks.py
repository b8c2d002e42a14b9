"""The task service: what a user can do with their tasks, over a `TaskStore`.

Each write follows docs/architecture.md: read the task, decide its new state
with the domain's rules, and store it in one update conditional on the
`writeSeq` read, which also sets the task's event in its outbox. When that
update misses, the task is read again: a new `version` means another user
write came first, a conflict for a caller who sent the version they read; a
new `writeSeq` alone means the reminder worker recorded a delivery, and the
write is decided again on the fresh state.

This module raises the domain's errors and knows nothing of HTTP.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from tm_domain import analytics, reminders, search, storage, tasks
from tm_domain.errors import Conflict, InvalidInput, NotAllowed, NotFound, Problem
from tm_domain.events import Due, EventType, TaskEvent

Change = tuple[dict[str, Any], EventType]
"""The fields a write sets, and the event it records."""


def utc_now() -> datetime:
    # Stores keep milliseconds: decide with what will be read back.
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _nothing(task_id: str) -> None:
    return None


async def _unwatched(user: storage.User, task_dates: Iterable[str]) -> None:
    return None


class TaskService:
    def __init__(
        self,
        store: storage.TaskStore,
        *,
        clock: Callable[[], datetime] = utc_now,
        after_write: Callable[[str], None] = _nothing,
        write_attempts: int = 5,
        view_limit: int = 5000,
        on_change: Callable[
            [storage.User, Iterable[str]], Awaitable[None]
        ] = _unwatched,
    ) -> None:
        """`on_change(user, dates)` runs after every write, before it is
        answered, with the task's dates before and after (cached views)."""
        self.store = store
        self.on_change = on_change
        self.clock = clock
        self.after_write = after_write
        self.write_attempts = write_attempts
        self.view_limit = view_limit

    async def create(
        self,
        user: storage.User,
        draft: tasks.TaskDraft,
        *,
        assigned_by: str | None = None,
    ) -> storage.Task:
        """A new task of `user`'s; `assigned_by` names the team owner who
        gave it, who alone may then change or delete it."""
        now = self.clock()
        tasks.validate(draft, now=now)
        fields = _fields(draft)
        reminder = reminders.plan(
            draft.reminder,
            task_date=fields["taskDate"],
            time_of_day=draft.time_of_day,
            timezone=draft.timezone,
            previous=None,
            active=True,
            now=now,
        )

        task_id = self.store.new_id()
        event = _event(
            EventType.CREATED, task_id, user, version=1, reminder=reminder, now=now
        )
        task: storage.Task = {
            "_id": task_id,
            "tenantId": user.tenant_id,
            "userId": user.user_id,
            **fields,
            "completed": False,
            "completedAt": None,
            "reminder": reminder,
            "createdAt": now,
            "updatedAt": now,
            "version": 1,
            "writeSeq": 1,
            "deletedAt": None,
            "outbox": [event.to_dict()],
            "outboxPending": True,
        }
        if assigned_by is not None:
            task["assignedBy"] = assigned_by
        await self.store.insert(task)
        self.after_write(task_id)
        await self.on_change(user, (fields["taskDate"],))

        return {k: v for k, v in task.items() if k != "outbox"}

    async def get(self, user: storage.User, task_id: str) -> storage.Task:
        task = await self.store.get(user, task_id)
        if task is None:
            raise NotFound(task_id)

        return task

    async def update(
        self,
        user: storage.User,
        task_id: str,
        draft: tasks.TaskDraft,
        *,
        version: int,
        as_owner: str | None = None,
        reassign_to: str | None = None,
    ) -> storage.Task:
        """Replace what the user may set, if the task is still at `version`.

        `as_owner`: the team owner acting on a task they assigned, who may
        hand it to another member (`reassign_to`).
        """
        tasks.validate(draft, now=self.clock())
        fields = _fields(draft)
        if reassign_to is not None:
            fields["userId"] = reassign_to

        def change(current: storage.Task, now: datetime) -> Change:
            _may_change(current, as_owner)
            reminder = reminders.plan(
                draft.reminder,
                task_date=fields["taskDate"],
                time_of_day=draft.time_of_day,
                timezone=draft.timezone,
                previous=current.get("reminder"),
                active=not current.get("completed"),
                now=now,
            )
            return {**fields, "reminder": reminder, "updatedAt": now}, EventType.UPDATED

        return await self._write(user, task_id, change, expected_version=version)

    async def set_completed(
        self,
        user: storage.User,
        task_id: str,
        *,
        completed: bool,
    ) -> storage.Task:
        """Complete a task, cancelling its reminder, or reopen it.

        Reopening schedules the reminder again if its time is still to come.
        Asking for the state the task is already in changes nothing.
        """

        def change(current: storage.Task, now: datetime) -> Change | None:
            if bool(current.get("completed")) == completed:
                return None
            reminder = _replan(current, active=not completed, now=now)
            kind = EventType.COMPLETED if completed else EventType.UPDATED
            fields = {
                "completed": completed,
                "completedAt": now if completed else None,
                "reminder": reminder,
                "updatedAt": now,
            }
            return fields, kind

        return await self._write(user, task_id, change)

    async def delete(
        self,
        user: storage.User,
        task_id: str,
        *,
        as_owner: str | None = None,
        erasing: bool = False,
    ) -> None:
        """Delete softly: the task keeps its last event and vanishes from reads.

        `erasing`: the user's personal data is being erased, which takes the
        tasks a team owner assigned them too.
        """

        def change(current: storage.Task, now: datetime) -> Change:
            if not erasing:
                _may_change(current, as_owner)
            previous = current.get("reminder")
            fields = {
                "deletedAt": now,
                "reminder": None if previous is None else reminders.cancel(previous),
                "updatedAt": now,
            }
            return fields, EventType.DELETED

        await self._write(user, task_id, change)

    async def retry_reminder(self, user: storage.User, task_id: str) -> storage.Task:
        """Schedule the failed deliveries of an open task's reminder again."""

        def change(current: storage.Task, now: datetime) -> Change:
            reminder = current.get("reminder")
            if reminder is None or current.get("completed"):
                raise InvalidInput(
                    [Problem("reminder", "the task has no open reminder to retry")]
                )
            retried = reminders.retry(reminder, now=now)
            return {"reminder": retried, "updatedAt": now}, EventType.UPDATED

        return await self._write(user, task_id, change)

    async def view(
        self, user: storage.User, dates: tasks.DateRange
    ) -> list[storage.Task]:
        """The user's tasks in a range of days, in the order views show them."""
        return await self.store.between(
            user, dates.first_text, dates.last_text, limit=self.view_limit
        )

    async def search(
        self,
        user: storage.User,
        query: search.SearchQuery,
        *,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[storage.Task], str | None]:
        """One page of the user's tasks that `query` selects, and the cursor
        of the next page (None after the last)."""
        problems = search.check(query)
        if not 1 <= limit <= search.LIMIT_MAX:
            problems.append(Problem("limit", f"must be 1 to {search.LIMIT_MAX}"))
        if problems:
            raise InvalidInput(problems)
        after = None if cursor is None else search.decode_cursor(cursor)

        found = await self.store.search(user, query, after=after, limit=limit + 1)
        page = found[:limit]
        more = len(found) > limit
        next_cursor = (
            search.encode_cursor(search.Position(*search.order_key(page[-1])))
            if more
            else None
        )
        return page, next_cursor

    async def analytics(
        self, user: storage.User, first: date, last: date
    ) -> dict[str, Any]:
        """The figures of the user's tasks dated `first` to `last`."""
        if last < first:
            raise InvalidInput([Problem("from", "must not be after `to`")])
        if (last - first).days + 1 > analytics.RANGE_MAX_DAYS:
            raise InvalidInput(
                [Problem("to", f"may be at most {analytics.RANGE_MAX_DAYS} days on")]
            )
        found = await self.store.between(
            user, first.isoformat(), last.isoformat(), limit=self.view_limit + 1
        )
        figures = analytics.summarize(found[: self.view_limit], first=first, last=last)
        # NB: past the view limit the figures cover its first tasks only.
        figures["complete"] = len(found) <= self.view_limit
        return figures

    async def _write(
        self,
        user: storage.User,
        task_id: str,
        change: Callable[[storage.Task, datetime], Change | None],
        *,
        expected_version: int | None = None,
    ) -> storage.Task:
        for _ in range(self.write_attempts):
            current = await self.store.get(user, task_id)
            if current is None:
                raise NotFound(task_id)
            if expected_version is not None and current["version"] != expected_version:
                raise Conflict(
                    f"the task is at version {current['version']}, "
                    f"not {expected_version}; read it again"
                )

            now = self.clock()
            decided = change(current, now)
            if decided is None:
                return current
            fields, kind = decided
            event = _event(
                kind,
                task_id,
                user,
                version=current["version"] + 1,
                reminder=fields.get("reminder", current.get("reminder")),
                now=now,
            )

            written = await self.store.write(
                user,
                task_id,
                write_seq=current["writeSeq"],
                changes=fields,
                event=event.to_dict(),
            )
            if written is not None:
                self.after_write(task_id)
                dates = {current["taskDate"], written["taskDate"]}
                await self.on_change(user, dates)
                # A reassigned task leaves one member's views for another's.
                holder = written.get("userId", user.user_id)
                if holder != user.user_id:
                    await self.on_change(storage.User(user.tenant_id, holder), dates)
                return written

        raise Conflict("the task kept changing while it was written; try again")


def _may_change(task: Mapping[str, Any], as_owner: str | None) -> None:
    """Refuse a change to an assigned task by anyone but its owner."""
    owner = task.get("assignedBy")
    if owner is not None and owner != as_owner:
        raise NotAllowed(
            f"this task was assigned by {owner}, who alone may change or delete "
            "it; it can be completed"
        )


def _fields(draft: tasks.TaskDraft) -> dict[str, Any]:
    """The stored fields a user sets directly, and the order they sort in."""
    task_date = draft.task_date.isoformat()
    return {
        "title": draft.title,
        "notes": draft.notes,
        "taskDate": task_date,
        "session": str(draft.session),
        "timeOfDay": draft.time_of_day,
        "durationMin": draft.duration_min,
        "priority": str(draft.priority),
        "scopeTag": str(draft.scope),
        "category": draft.category,
        "tags": list(draft.tags),
        "timezone": draft.timezone,
        "sortKey": tasks.sort_key(task_date, str(draft.session), draft.time_of_day),
    }


def _replan(
    current: Mapping[str, Any], *, active: bool, now: datetime
) -> dict[str, Any] | None:
    """The task's own reminder, planned again for the task (in)active."""
    stored = current.get("reminder")
    if stored is None:
        return None
    draft = reminders.ReminderDraft(
        enabled=bool(stored.get("enabled")),
        channels=tuple(reminders.Channel(c) for c in stored.get("channels") or ()),
        send_at=stored.get("sendAt"),
        offset_min=stored.get("offsetMin"),
        phone=stored.get("phone"),
        email=stored.get("email"),
    )

    return reminders.plan(
        draft,
        task_date=current["taskDate"],
        time_of_day=current.get("timeOfDay"),
        timezone=current.get("timezone") or tasks.TIMEZONE_DEFAULT,
        previous=stored,
        active=active,
        now=now,
    )


def _event(
    kind: EventType,
    task_id: str,
    user: storage.User,
    *,
    version: int,
    reminder: Mapping[str, Any] | None,
    now: datetime,
) -> TaskEvent:
    revision = None if reminder is None else int(reminder.get("revision") or 0)
    deliveries = tuple(
        Due(task_id=task_id, revision=revision or 0, channel=channel, due_at=due_at)
        for channel, due_at in reminders.scheduled(reminder)
    )

    return TaskEvent(
        id=uuid.uuid4().hex,
        type=kind,
        task_id=task_id,
        tenant_id=user.tenant_id,
        user_id=user.user_id,
        version=version,
        occurred_at=now,
        reminder_revision=revision,
        deliveries=deliveries,
    )
