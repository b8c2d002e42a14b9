"""The API's models: what a client may send, and what it reads back.

Field names are camelCase, as in the design document. Input models refuse
unknown fields, with one exception: the read-only fields a GET shows (`_id`,
`createdAt`, `updatedAt`, `completed`, `completedAt`, `assignedBy`,
`assignedTo`, `version` on create, and a reminder's `revision`, `status`,
`sentAt`, `attempts`, `lastError`, `deliveries`) are accepted and ignored, so a
client may send back the task it read with its edits. Completion changes
through `PATCH .../complete` only.

Types are strict: a number is not a string, `"true"` is not a boolean, and
dates and instants are text in ISO 8601.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

from tm_domain import reminders, tasks

# Dates outside these years are refused: nothing is planned there, and the
# arithmetic of time zones and offsets near year 1 or 9999 overflows.
YEAR_MIN = 1900
YEAR_MAX = 2999

_ECHOED = Field(default=None, exclude=True, description="Read-only; ignored.")


def _utf8(value: str) -> str:
    # JSON may carry lone surrogates, which no store can encode.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None

    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")

    return value


def calendar_date(value: str) -> str:
    if len(value) != 10 or value[4] != "-" or value[7] != "-":
        raise ValueError("must be a date in YYYY-MM-DD format")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise ValueError("must be a real calendar date in YYYY-MM-DD format") from None
    if not YEAR_MIN <= parsed.year <= YEAR_MAX:
        raise ValueError(f"must be in the years {YEAR_MIN} to {YEAR_MAX}")

    return value


def _instant(value: Any) -> datetime:
    if not isinstance(value, str) or len(value) > 64:
        raise ValueError("must be ISO 8601 text, such as 2026-03-08T08:30:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date and time, such as 2026-03-08T08:30:00Z"
        ) from None
    if not YEAR_MIN <= parsed.year <= YEAR_MAX:
        raise ValueError(f"must be in the years {YEAR_MIN} to {YEAR_MAX}")

    return parsed


def text(*, min_length: int | None = None, max_length: int) -> Any:
    """A string type: strict, bounded, and encodable as UTF-8."""
    return Annotated[
        StrictStr,
        StringConstraints(min_length=min_length, max_length=max_length),
        AfterValidator(_utf8),
    ]


DateText = Annotated[StrictStr, AfterValidator(calendar_date)]
"""A calendar date kept as the text `YYYY-MM-DD`."""
Instant = Annotated[datetime, BeforeValidator(_instant)]
"""An ISO 8601 date and time; the domain refuses one without a UTC offset."""
Title = Annotated[
    text(min_length=1, max_length=tasks.TITLE_MAX), AfterValidator(_not_blank)
]
Notes = text(max_length=tasks.NOTES_MAX)
TimeOfDay = text(max_length=5)
Category = text(max_length=tasks.CATEGORY_MAX)
Tag = text(min_length=1, max_length=tasks.TAG_MAX)
TimezoneName = text(min_length=1, max_length=64)
Phone = text(max_length=32)
Email = text(max_length=254)


class _Input(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
    )


class ReminderIn(_Input):
    enabled: StrictBool = True
    channels: list[Literal["sms", "email"]] = Field(default_factory=list, max_length=2)
    send_at: Instant | None = None
    """When to send, with a UTC offset; `offsetMin` wins when both are given."""
    offset_min: StrictInt | None = None
    """Minutes before the task's date and time of day, in its time zone."""
    phone: Phone | None = None
    """E.164, such as +14155550100; required for sms."""
    email: Email | None = None
    """Required for email."""

    revision: Any = _ECHOED
    status: Any = _ECHOED
    sent_at: Any = _ECHOED
    attempts: Any = _ECHOED
    last_error: Any = _ECHOED
    deliveries: Any = _ECHOED

    def to_draft(self) -> reminders.ReminderDraft:
        return reminders.ReminderDraft(
            enabled=self.enabled,
            channels=tuple(reminders.Channel(c) for c in self.channels),
            send_at=self.send_at,
            offset_min=self.offset_min,
            phone=self.phone,
            email=self.email,
        )


TASK_EXAMPLE: dict[str, Any] = {
    "title": "Morning standup meeting",
    "notes": "Discuss sprint progress",
    "taskDate": "2030-01-15",
    "session": "morning",
    "timeOfDay": "09:00",
    "durationMin": 30,
    "priority": "high",
    "scopeTag": "daily",
    "category": "work",
    "tags": ["meeting", "team"],
    "timezone": "Europe/Paris",
    "reminder": {
        "enabled": True,
        "channels": ["sms", "email"],
        "offsetMin": 30,
        "phone": "+14155550100",
        "email": "user@example.com",
    },
}


class TaskCreate(_Input):
    model_config = ConfigDict(json_schema_extra={"examples": [TASK_EXAMPLE]})

    title: Title
    notes: Notes | None = None
    task_date: DateText
    session: Literal["morning", "afternoon", "evening"]
    time_of_day: TimeOfDay | None = None
    """`HH:MM`, 24-hour clock, in the task's time zone."""
    duration_min: (
        Annotated[StrictInt, Field(ge=1, le=tasks.DURATION_MAX_MIN)] | None
    ) = None
    priority: Literal["low", "medium", "high"] = "medium"
    scope_tag: Literal["daily", "weekly", "monthly"] = "daily"
    category: Category | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=tasks.TAGS_MAX)
    timezone: TimezoneName = tasks.TIMEZONE_DEFAULT
    """IANA time zone name; default UTC."""
    reminder: ReminderIn | None = None

    id_: Any = Field(default=None, alias="_id", exclude=True)
    version: Any = _ECHOED
    created_at: Any = _ECHOED
    updated_at: Any = _ECHOED
    completed: Any = _ECHOED
    completed_at: Any = _ECHOED
    assigned_by: Any = _ECHOED
    assigned_to: Any = _ECHOED

    def to_draft(self) -> tasks.TaskDraft:
        return tasks.TaskDraft(
            title=self.title,
            task_date=date.fromisoformat(self.task_date),
            session=tasks.Session(self.session),
            time_of_day=self.time_of_day,
            notes=self.notes,
            duration_min=self.duration_min,
            priority=tasks.Priority(self.priority),
            scope=tasks.Scope(self.scope_tag),
            category=self.category,
            tags=tuple(self.tags),
            timezone=self.timezone,
            reminder=None if self.reminder is None else self.reminder.to_draft(),
        )


class TaskUpdate(TaskCreate):
    """A full replacement of what a user may set; `version` is the one read."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**TASK_EXAMPLE, "version": 1}]}
    )

    version: Annotated[StrictInt, Field(ge=1, le=2**53)]


ID_PATTERN = r"^[A-Za-z0-9._:@|-]{1,128}$"
"""User and tenant ids: printable, no spaces, no slash."""

MemberId = Annotated[StrictStr, StringConstraints(pattern=ID_PATTERN)]


class OwnerTaskCreate(TaskCreate):
    """A task an owner assigns to a member of their team."""

    assignee_id: MemberId


class OwnerTaskUpdate(TaskUpdate):
    """A full replacement by the owner; a new `assigneeId` reassigns it."""

    assignee_id: MemberId | None = None


class TaskCompletion(_Input):
    model_config = ConfigDict(json_schema_extra={"examples": [{"completed": True}]})

    completed: StrictBool = True


TaskId = Annotated[text(min_length=1, max_length=64), Field(description="a task id")]


class BatchCreate(_Input):
    """Create `task`; answered 201 with the task."""

    op: Literal["create"]
    task: TaskCreate


class BatchUpdate(_Input):
    """Replace task `id` with `task`, which carries the version read."""

    op: Literal["update"]
    id: TaskId
    task: TaskUpdate


class BatchComplete(_Input):
    """Complete task `id`, or reopen it with `task: {"completed": false}`."""

    op: Literal["complete"]
    id: TaskId
    task: TaskCompletion | None = None


class BatchDelete(_Input):
    """Delete task `id` and cancel its reminder."""

    op: Literal["delete"]
    id: TaskId


BatchOperation = Annotated[
    BatchCreate | BatchUpdate | BatchComplete | BatchDelete,
    Field(discriminator="op"),
]
BATCH_MAX = 100

BATCH_EXAMPLE: dict[str, Any] = {
    "operations": [
        {"op": "create", "task": TASK_EXAMPLE},
        {"op": "complete", "id": "6650f0c2a1b2c3d4e5f60718"},
        {"op": "delete", "id": "6650f0c2a1b2c3d4e5f60719"},
    ]
}


class BatchRequest(_Input):
    """Up to 100 operations, run in order; each is validated on its own, so
    one malformed operation fails alone with a 400 result."""

    model_config = ConfigDict(json_schema_extra={"examples": [BATCH_EXAMPLE]})

    operations: list[dict[str, Any]] = Field(min_length=1, max_length=BATCH_MAX)


class _Output(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class DeliveryPublic(_Output):
    state: str
    due_at: datetime | None = None
    attempts: int = 0
    provider_message_id: str | None = None
    sent_at: datetime | None = None
    last_error: str | None = None
    lateness_ms: int | None = None


class ReminderPublic(_Output):
    enabled: bool
    channels: list[str]
    send_at: datetime | None
    offset_min: int | None
    phone: str | None
    email: str | None
    revision: int
    status: str | None
    """pending, sent, failed or cancelled; derived from the deliveries."""
    sent_at: datetime | None
    attempts: int
    last_error: str | None
    deliveries: dict[str, DeliveryPublic]


class TaskPublic(_Output):
    id: str = Field(alias="_id")
    title: str
    notes: str | None
    task_date: str
    session: str
    time_of_day: str | None
    duration_min: int | None
    priority: str
    scope_tag: str
    category: str | None
    tags: list[str]
    timezone: str
    completed: bool
    completed_at: datetime | None
    reminder: ReminderPublic | None
    assigned_by: str | None = None
    """The team owner who assigned the task, who alone may change it."""
    assigned_to: str | None = None
    """The member holding an assigned task."""
    created_at: datetime
    updated_at: datetime
    version: int


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def reminder_public(reminder: dict[str, Any] | None) -> ReminderPublic | None:
    if reminder is None:
        return None
    summary = reminders.summarize(reminder)
    deliveries = {
        channel: DeliveryPublic(
            state=d["state"],
            due_at=_utc(d.get("dueAt")),
            attempts=int(d.get("attempts") or 0),
            provider_message_id=d.get("providerMessageId"),
            sent_at=_utc(d.get("sentAt")),
            last_error=d.get("lastError"),
            lateness_ms=d.get("latenessMs"),
        )
        for channel, d in (reminder.get("deliveries") or {}).items()
    }

    return ReminderPublic(
        enabled=reminder["enabled"],
        channels=list(reminder.get("channels") or ()),
        send_at=_utc(reminder.get("sendAt")),
        offset_min=reminder.get("offsetMin"),
        phone=reminder.get("phone"),
        email=reminder.get("email"),
        revision=int(reminder.get("revision") or 0),
        status=None if summary.status is None else str(summary.status),
        sent_at=_utc(summary.sent_at),
        attempts=summary.attempts,
        last_error=summary.last_error,
        deliveries=deliveries,
    )


def task_public(task: dict[str, Any]) -> TaskPublic:
    """What a user reads of a stored task; never leases, outbox or counters."""
    return TaskPublic(
        _id=task["_id"],
        title=task["title"],
        notes=task.get("notes"),
        task_date=task["taskDate"],
        session=task["session"],
        time_of_day=task.get("timeOfDay"),
        duration_min=task.get("durationMin"),
        priority=task["priority"],
        scope_tag=task["scopeTag"],
        category=task.get("category"),
        tags=list(task.get("tags") or ()),
        timezone=task.get("timezone") or tasks.TIMEZONE_DEFAULT,
        completed=bool(task.get("completed")),
        completed_at=_utc(task.get("completedAt")),
        reminder=reminder_public(task.get("reminder")),
        assigned_by=task.get("assignedBy"),
        assigned_to=task.get("userId") if task.get("assignedBy") else None,
        created_at=task["createdAt"].astimezone(UTC),
        updated_at=task["updatedAt"].astimezone(UTC),
        version=task["version"],
    )


class SearchPage(_Output):
    items: list[TaskPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null after the last."
    )


class Meta(_Output):
    request_id: str
    timestamp: datetime
    version: Literal["v1"] = "v1"


DataT = TypeVar("DataT")


class Success(_Output, Generic[DataT]):
    success: Literal[True] = True
    data: DataT
    meta: Meta


class ErrorDetail(_Output):
    field: str
    message: str


class ErrorBody(_Output):
    code: str
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)
    request_id: str
    timestamp: datetime


class Failure(_Output):
    success: Literal[False] = False
    error: ErrorBody


class DeletedTask(_Output):
    id: str = Field(alias="_id")
    deleted: Literal[True] = True


class BatchResult(_Output):
    """One operation's outcome: `data` when `status` is 2xx, else `error`."""

    index: int
    op: str | None
    status: int
    data: TaskPublic | DeletedTask | None = None
    error: ErrorBody | None = None


class BatchResults(_Output):
    results: list[BatchResult]
    succeeded: int
    failed: int
