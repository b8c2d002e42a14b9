"""Reminders: the checks on a draft, when it is due, its deliveries and its status."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tm_domain import reminders
from tm_domain.errors import InvalidInput, Problem
from tm_domain.reminders import Channel, DeliveryState, Status

PHONE = "+14155550100"
EMAIL = "ann@example.com"


def a_reminder(**changes: Any) -> reminders.ReminderDraft:
    fields: dict[str, Any] = {
        "enabled": True,
        "channels": (Channel.SMS,),
        "send_at": datetime(2026, 6, 1, 15, 0, tzinfo=UTC),
        "phone": PHONE,
    }
    fields.update(changes)
    return reminders.ReminderDraft(**fields)


def plan(
    draft: reminders.ReminderDraft | None,
    *,
    now: datetime,
    previous: dict[str, Any] | None = None,
    active: bool = True,
    task_date: str = "2026-06-02",
    time_of_day: str | None = None,
    timezone: str = "UTC",
) -> dict[str, Any] | None:
    return reminders.plan(
        draft,
        task_date=task_date,
        time_of_day=time_of_day,
        timezone=timezone,
        previous=previous,
        active=active,
        now=now,
    )


def a_delivery(state: DeliveryState, **changes: Any) -> dict[str, Any]:
    delivery = reminders.new_delivery(datetime(2026, 6, 1, 15, 0, tzinfo=UTC))
    delivery.update(state=str(state), **changes)
    return delivery


def with_deliveries(**deliveries: dict[str, Any]) -> dict[str, Any]:
    return {"enabled": True, "revision": 1, "deliveries": deliveries}


def states(reminder: dict[str, Any] | None) -> dict[str, str]:
    assert reminder is not None
    return {channel: d["state"] for channel, d in reminder["deliveries"].items()}


# check


@pytest.mark.parametrize(
    ("draft", "problem"),
    [
        (
            a_reminder(channels=()),
            Problem("reminder.channels", "must name at least one channel"),
        ),
        (
            a_reminder(channels=(Channel.SMS, Channel.SMS)),
            Problem("reminder.channels", "must not repeat a channel"),
        ),
        (
            a_reminder(phone=None),
            Problem("reminder.phone", "is required for the sms channel"),
        ),
        (
            a_reminder(channels=(Channel.EMAIL,), phone=None),
            Problem("reminder.email", "is required for the email channel"),
        ),
        (
            a_reminder(send_at=datetime(2026, 6, 1, 15, 0)),
            Problem("reminder.sendAt", "must be ISO 8601 with a UTC offset or Z"),
        ),
        (
            a_reminder(send_at=None),
            Problem("reminder.sendAt", "sendAt or offsetMin is required"),
        ),
        (
            a_reminder(send_at=None, offset_min=-1),
            Problem("reminder.offsetMin", "must be 0 to 10080"),
        ),
        (
            a_reminder(send_at=None, offset_min=7 * 24 * 60 + 1),
            Problem("reminder.offsetMin", "must be 0 to 10080"),
        ),
    ],
    ids=[
        "no-channel",
        "repeated-channel",
        "sms-without-phone",
        "email-without-address",
        "naive-sendAt",
        "no-time",
        "offset-negative",
        "offset-over-a-week",
    ],
)
def test_a_reminder_draft_breaking_one_rule_gets_that_one_problem(
    draft: reminders.ReminderDraft, problem: Problem, now: datetime
) -> None:
    problems = reminders.check(draft, time_of_day="09:00", now=now)

    assert problems == [problem]


def test_an_offset_needs_the_task_time_of_day(now: datetime) -> None:
    draft = a_reminder(send_at=None, offset_min=30)

    problems = reminders.check(draft, time_of_day=None, now=now)

    assert problems == [
        Problem("reminder.offsetMin", "needs the task's timeOfDay to count from")
    ]


@pytest.mark.parametrize("offset_min", [0, 7 * 24 * 60])
def test_an_offset_from_zero_to_a_week_is_accepted(
    offset_min: int, now: datetime
) -> None:
    draft = a_reminder(send_at=None, offset_min=offset_min)

    assert reminders.check(draft, time_of_day="09:00", now=now) == []


def test_a_disabled_reminder_needs_neither_channel_nor_time(now: datetime) -> None:
    draft = reminders.ReminderDraft(enabled=False, channels=())

    assert reminders.check(draft, time_of_day=None, now=now) == []


def test_both_channels_with_both_recipients_are_accepted(now: datetime) -> None:
    draft = a_reminder(channels=(Channel.SMS, Channel.EMAIL), email=EMAIL)

    assert reminders.check(draft, time_of_day=None, now=now) == []


@pytest.mark.parametrize(
    "phone",
    [
        "4155550100",
        "+04155550100",
        "+1 415 555 0100",
        "+12345",
        "+1234567890123456",
        "+14155550100\n",
    ],
    ids=["no-plus", "leading-zero", "spaces", "too-short", "too-long", "newline"],
)
def test_a_phone_number_that_is_not_e164_is_refused(phone: str, now: datetime) -> None:
    problems = reminders.check(a_reminder(phone=phone), time_of_day=None, now=now)

    assert problems == [
        Problem("reminder.phone", "must be an E.164 number such as +14155550100")
    ]


@pytest.mark.parametrize("phone", ["+14155550100", "+442071838750", "+4930123456"])
def test_an_e164_phone_number_is_accepted(phone: str) -> None:
    assert reminders.is_phone(phone) is True


@pytest.mark.parametrize(
    "email",
    [
        "ann.example.com",
        "ann@example",
        "ann lee@example.com",
        "<ann@example.com>",
        "ann@-example.com",
        "ann@example.com\n",
        "a" * 64 + "@" + ("b" * 60 + ".") * 4 + "com",
    ],
    ids=["no-at", "no-dot", "space", "brackets", "dash-label", "newline", "too-long"],
)
def test_an_email_that_is_not_an_address_is_refused(email: str, now: datetime) -> None:
    draft = a_reminder(channels=(Channel.EMAIL,), email=email)

    problems = reminders.check(draft, time_of_day=None, now=now)

    assert problems == [Problem("reminder.email", "must be an e-mail address")]


@pytest.mark.parametrize("email", [EMAIL, "ann.lee+tm@mail.example.co.uk"])
def test_an_email_address_is_accepted(email: str) -> None:
    assert reminders.is_email(email) is True


# resolve


def test_a_send_time_in_another_offset_is_the_same_utc_instant() -> None:
    draft = a_reminder(
        send_at=datetime(2026, 6, 2, 9, 30, tzinfo=ZoneInfo("America/Los_Angeles"))
    )

    due = reminders.resolve(
        draft, task_date="2026-06-02", time_of_day=None, timezone="Asia/Tokyo"
    )

    assert due == datetime(2026, 6, 2, 16, 30, tzinfo=UTC)
    assert due.utcoffset() == timedelta(0)


def test_an_offset_counts_back_from_the_task_start_in_its_zone() -> None:
    draft = a_reminder(send_at=None, offset_min=30)

    due = reminders.resolve(
        draft, task_date="2026-06-02", time_of_day="09:00", timezone="Europe/Paris"
    )

    assert due == datetime(2026, 6, 2, 6, 30, tzinfo=UTC)


def test_an_offset_wins_over_a_send_time_given_with_it() -> None:
    draft = a_reminder(send_at=datetime(2026, 6, 1, 0, 0, tzinfo=UTC), offset_min=0)

    due = reminders.resolve(
        draft, task_date="2026-06-02", time_of_day="09:00", timezone="UTC"
    )

    assert due == datetime(2026, 6, 2, 9, 0, tzinfo=UTC)


def test_a_reminder_with_no_time_cannot_be_resolved() -> None:
    draft = a_reminder(send_at=None)

    with pytest.raises(ValueError, match="sendAt or offsetMin"):
        reminders.resolve(
            draft, task_date="2026-06-02", time_of_day=None, timezone="UTC"
        )


@pytest.mark.parametrize(
    ("zone", "task_date", "time_of_day", "offset_min", "due_utc", "due_local"),
    [
        # the hour skipped in spring moves forward by the gap
        ("America/New_York", "2026-03-08", "02:30", 0, "2026-03-08 07:30", "03:30 EDT"),
        # the hour repeated in autumn means its first occurrence
        ("America/New_York", "2026-11-01", "01:30", 0, "2026-11-01 05:30", "01:30 EDT"),
        # offsets count real minutes, across the gap and across the fold
        (
            "America/New_York",
            "2026-03-08",
            "03:30",
            60,
            "2026-03-08 06:30",
            "01:30 EST",
        ),
        (
            "America/New_York",
            "2026-11-01",
            "02:00",
            60,
            "2026-11-01 06:00",
            "01:00 EST",
        ),
        ("Europe/London", "2026-03-29", "01:30", 0, "2026-03-29 01:30", "02:30 BST"),
        ("Europe/London", "2026-10-25", "01:30", 0, "2026-10-25 00:30", "01:30 BST"),
        ("Europe/London", "2026-10-25", "02:00", 60, "2026-10-25 01:00", "01:00 GMT"),
        (
            "Australia/Sydney",
            "2026-10-04",
            "02:30",
            0,
            "2026-10-03 16:30",
            "03:30 AEDT",
        ),
        (
            "Australia/Sydney",
            "2026-04-05",
            "02:30",
            0,
            "2026-04-04 15:30",
            "02:30 AEDT",
        ),
        (
            "Australia/Sydney",
            "2026-06-15",
            "09:00",
            15,
            "2026-06-14 22:45",
            "08:45 AEST",
        ),
    ],
    ids=[
        "new-york-gap",
        "new-york-fold",
        "new-york-offset-across-gap",
        "new-york-offset-across-fold",
        "london-gap",
        "london-fold",
        "london-offset-across-fold",
        "sydney-gap",
        "sydney-fold",
        "sydney-winter-previous-day",
    ],
)
def test_daylight_saving_days_follow_one_rule(
    zone: str,
    task_date: str,
    time_of_day: str,
    offset_min: int,
    due_utc: str,
    due_local: str,
) -> None:
    draft = a_reminder(send_at=None, offset_min=offset_min)

    due = reminders.resolve(
        draft, task_date=task_date, time_of_day=time_of_day, timezone=zone
    )

    assert due == datetime.fromisoformat(due_utc).replace(tzinfo=UTC)
    assert due.astimezone(ZoneInfo(zone)).strftime("%H:%M %Z") == due_local


# plan


def test_a_new_reminder_gets_revision_one_and_a_delivery_per_channel(
    now: datetime,
) -> None:
    draft = a_reminder(channels=(Channel.SMS, Channel.EMAIL), email=EMAIL)

    planned = plan(draft, now=now)

    assert planned is not None
    assert planned["revision"] == 1
    assert planned["sendAt"] == datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
    assert planned["channels"] == ["sms", "email"]
    assert (planned["phone"], planned["email"], planned["offsetMin"]) == (
        PHONE,
        EMAIL,
        None,
    )
    assert planned["deliveries"] == {
        "sms": reminders.new_delivery(planned["sendAt"]),
        "email": reminders.new_delivery(planned["sendAt"]),
    }
    assert planned["deliveries"]["sms"]["state"] == "scheduled"
    assert planned["deliveries"]["sms"]["dueAt"] == planned["sendAt"]


def test_an_offset_reminder_is_planned_from_the_task_start(now: datetime) -> None:
    draft = a_reminder(send_at=None, offset_min=90)

    planned = plan(draft, now=now, time_of_day="08:00", timezone="America/New_York")

    assert planned is not None
    assert planned["sendAt"] == datetime(2026, 6, 2, 10, 30, tzinfo=UTC)
    assert planned["offsetMin"] == 90


def test_the_send_time_is_kept_to_the_millisecond(now: datetime) -> None:
    draft = a_reminder(send_at=datetime(2026, 6, 1, 15, 0, 0, 123456, tzinfo=UTC))

    planned = plan(draft, now=now)

    assert planned is not None
    assert planned["sendAt"].microsecond == 123000


def test_replanning_the_same_reminder_keeps_its_revision_and_deliveries(
    now: datetime,
) -> None:
    draft = a_reminder()
    first = plan(draft, now=now)
    assert first is not None
    first["deliveries"]["sms"].update(
        state="sent", attempts=1, providerMessageId="SM1", sentAt=first["sendAt"]
    )

    # The task's title changed after the reminder went out.
    again = plan(draft, now=now + timedelta(hours=4), previous=first)

    assert again is not None
    assert again["revision"] == 1
    assert again["deliveries"]["sms"]["state"] == "sent"
    assert again["deliveries"]["sms"]["providerMessageId"] == "SM1"
    assert again["deliveries"]["sms"]["attempts"] == 1


def test_a_send_time_read_back_naive_is_still_the_same_reminder(
    now: datetime,
) -> None:
    draft = a_reminder()
    first = plan(draft, now=now)
    assert first is not None
    first["sendAt"] = first["sendAt"].replace(tzinfo=None)

    again = plan(draft, now=now, previous=first)

    assert again is not None
    assert again["revision"] == 1


@pytest.mark.parametrize(
    "change",
    [
        {"send_at": datetime(2026, 6, 1, 16, 0, tzinfo=UTC)},
        {"channels": (Channel.EMAIL,), "email": EMAIL},
        {"phone": "+14155550199"},
    ],
    ids=["sendAt", "channel", "phone"],
)
def test_changing_when_or_where_gives_a_new_revision_and_fresh_deliveries(
    change: dict[str, Any], now: datetime
) -> None:
    first = plan(a_reminder(), now=now)
    assert first is not None
    first["deliveries"]["sms"].update(state="failed", attempts=3, lastError="busy")

    changed = plan(a_reminder(**change), now=now, previous=first)

    assert changed is not None
    assert changed["revision"] == 2
    for delivery in changed["deliveries"].values():
        assert delivery == reminders.new_delivery(changed["sendAt"])


def test_disabling_a_reminder_gives_a_new_revision_without_deliveries(
    now: datetime,
) -> None:
    first = plan(a_reminder(), now=now)

    disabled = plan(a_reminder(enabled=False), now=now, previous=first)

    assert disabled is not None
    assert disabled["revision"] == 2
    assert disabled["enabled"] is False
    assert disabled["deliveries"] == {}


def test_a_disabled_reminder_may_have_no_time(now: datetime) -> None:
    first = plan(a_reminder(), now=now)
    draft = reminders.ReminderDraft(enabled=False, channels=())

    disabled = plan(draft, now=now, previous=first)

    assert disabled is not None
    assert (disabled["revision"], disabled["sendAt"]) == (2, None)
    assert disabled["deliveries"] == {}


def test_closing_the_task_cancels_what_has_not_gone_out(now: datetime) -> None:
    draft = a_reminder(channels=(Channel.SMS, Channel.EMAIL), email=EMAIL)
    first = plan(draft, now=now)
    assert first is not None
    first["deliveries"]["email"].update(state="sent", sentAt=first["sendAt"])

    closed = plan(draft, now=now, previous=first, active=False)

    assert closed is not None
    assert closed["revision"] == 1
    assert states(closed) == {"sms": "cancelled", "email": "sent"}


def test_reopening_the_task_before_the_send_time_schedules_a_new_revision(
    now: datetime,
) -> None:
    draft = a_reminder()
    closed = plan(draft, now=now, previous=plan(draft, now=now), active=False)

    reopened = plan(draft, now=now, previous=closed)

    assert reopened is not None
    assert reopened["revision"] == 2
    assert states(reopened) == {"sms": "scheduled"}


def test_reopening_the_task_after_the_send_time_leaves_it_cancelled(
    now: datetime,
) -> None:
    draft = a_reminder()
    closed = plan(draft, now=now, previous=plan(draft, now=now), active=False)

    reopened = plan(draft, now=now + timedelta(hours=5), previous=closed)

    assert reopened is not None
    assert reopened["revision"] == 1
    assert states(reopened) == {"sms": "cancelled"}


def test_a_reminder_moved_while_the_task_was_closed_is_sent_once_reopened(
    now: datetime,
) -> None:
    closed = plan(
        a_reminder(), now=now, previous=plan(a_reminder(), now=now), active=False
    )
    moved = a_reminder(send_at=datetime(2026, 6, 1, 18, 0, tzinfo=UTC))
    moved_while_closed = plan(moved, now=now, previous=closed, active=False)

    reopened = plan(moved, now=now, previous=moved_while_closed)

    assert moved_while_closed is not None
    assert moved_while_closed["deliveries"] == {}
    assert reopened is not None
    assert reopened["revision"] == 3
    assert states(reopened) == {"sms": "scheduled"}
    assert reopened["deliveries"]["sms"]["dueAt"] == moved.send_at


def test_a_send_time_more_than_a_minute_past_is_refused(now: datetime) -> None:
    draft = a_reminder(send_at=now - timedelta(seconds=61))

    with pytest.raises(InvalidInput) as refused:
        plan(draft, now=now)

    assert [p.field for p in refused.value.problems] == ["reminder.sendAt"]


def test_a_send_time_within_a_minute_past_is_scheduled(now: datetime) -> None:
    draft = a_reminder(send_at=now - timedelta(seconds=59))

    planned = plan(draft, now=now)

    assert planned is not None
    assert planned["deliveries"]["sms"]["dueAt"] == now - timedelta(seconds=59)


def test_removing_the_reminder_cancels_its_deliveries(now: datetime) -> None:
    first = plan(a_reminder(), now=now)

    removed = plan(None, now=now, previous=first)

    assert removed is not None
    assert removed["revision"] == 1
    assert states(removed) == {"sms": "cancelled"}


def test_a_task_without_a_reminder_plans_none(now: datetime) -> None:
    assert plan(None, now=now) is None


# summarize


@pytest.mark.parametrize(
    ("delivery_states", "status"),
    [
        ((DeliveryState.SCHEDULED, DeliveryState.SENT), Status.PENDING),
        ((DeliveryState.SCHEDULED, DeliveryState.FAILED), Status.PENDING),
        ((DeliveryState.SENT, DeliveryState.FAILED), Status.FAILED),
        ((DeliveryState.FAILED, DeliveryState.CANCELLED), Status.FAILED),
        ((DeliveryState.SENT, DeliveryState.CANCELLED), Status.CANCELLED),
        ((DeliveryState.SENT, DeliveryState.SENT), Status.SENT),
    ],
    ids=lambda v: "+".join(v) if isinstance(v, tuple) else str(v),
)
def test_the_reminder_status_follows_its_deliveries(
    delivery_states: tuple[DeliveryState, DeliveryState], status: Status
) -> None:
    reminder = with_deliveries(
        sms=a_delivery(delivery_states[0]), email=a_delivery(delivery_states[1])
    )

    assert reminders.summarize(reminder).status is status


def test_attempts_are_summed_over_the_deliveries() -> None:
    reminder = with_deliveries(
        sms=a_delivery(DeliveryState.FAILED, attempts=3, lastError="invalid number"),
        email=a_delivery(DeliveryState.SENT, attempts=2),
    )

    summary = reminders.summarize(reminder)

    assert summary.attempts == 5
    assert summary.last_error == "invalid number"


def test_sent_at_is_the_last_send_once_every_delivery_went_out() -> None:
    first = datetime(2026, 6, 1, 15, 0, 1, tzinfo=UTC)
    reminder = with_deliveries(
        sms=a_delivery(DeliveryState.SENT, sentAt=first),
        email=a_delivery(DeliveryState.SENT, sentAt=datetime(2026, 6, 1, 15, 0, 3)),
    )

    summary = reminders.summarize(reminder)

    assert summary.status is Status.SENT
    assert summary.sent_at == datetime(2026, 6, 1, 15, 0, 3, tzinfo=UTC)


def test_sent_at_is_not_shown_while_the_reminder_is_not_sent() -> None:
    reminder = with_deliveries(
        sms=a_delivery(
            DeliveryState.SENT, sentAt=datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
        ),
        email=a_delivery(DeliveryState.FAILED, lastError="bounced"),
    )

    summary = reminders.summarize(reminder)

    assert summary.status is Status.FAILED
    assert summary.sent_at is None


@pytest.mark.parametrize("reminder", [None, {"enabled": False, "deliveries": {}}])
def test_a_reminder_without_deliveries_has_no_status(
    reminder: dict[str, Any] | None,
) -> None:
    assert reminders.summarize(reminder) == reminders.Summary(None, None, 0, None)


# message


def a_task(**changes: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "title": "Dentist",
        "taskDate": "2026-06-02",
        "timeOfDay": "09:30",
        "timezone": "Europe/Paris",
        "notes": "Bring the insurance card",
    }
    task.update(changes)
    return task


def test_an_sms_says_the_title_and_when() -> None:
    assert reminders.message(a_task(), "sms") == (
        "Reminder: Dentist",
        "Reminder: Dentist, 2026-06-02 at 09:30 (Europe/Paris)",
    )


def test_an_sms_for_a_task_without_a_time_says_the_day() -> None:
    _, text = reminders.message(a_task(timeOfDay=None), "sms")

    assert text == "Reminder: Dentist, 2026-06-02"


def test_an_email_carries_the_notes_below_when() -> None:
    assert reminders.message(a_task(), "email") == (
        "Reminder: Dentist",
        "Dentist\n2026-06-02 at 09:30 (Europe/Paris)\n\nBring the insurance card",
    )


def test_an_email_without_notes_or_zone_says_utc() -> None:
    _, text = reminders.message(a_task(notes=None, timezone=None), "email")

    assert text == "Dentist\n2026-06-02 at 09:30 (UTC)"


def test_an_email_for_a_task_without_a_time_says_the_day() -> None:
    _, text = reminders.message(a_task(timeOfDay=None, notes=""), "email")

    assert text == "Dentist\n2026-06-02"


# scheduled


def test_scheduled_lists_only_the_deliveries_waiting_to_go_out() -> None:
    due = datetime(2026, 6, 1, 15, 0, tzinfo=UTC)
    reminder = with_deliveries(
        sms=a_delivery(DeliveryState.SENT, dueAt=due),
        email=a_delivery(DeliveryState.SCHEDULED, dueAt=due),
    )

    assert reminders.scheduled(reminder) == [("email", due)]


def test_a_due_time_read_back_naive_is_taken_as_utc() -> None:
    reminder = with_deliveries(
        sms=a_delivery(DeliveryState.SCHEDULED, dueAt=datetime(2026, 6, 1, 15, 0)),
    )

    [(channel, due)] = reminders.scheduled(reminder)

    assert (channel, due) == ("sms", datetime(2026, 6, 1, 15, 0, tzinfo=UTC))
    assert due.tzinfo is UTC


@pytest.mark.parametrize("reminder", [None, {}])
def test_no_reminder_has_nothing_scheduled(reminder: dict[str, Any] | None) -> None:
    assert reminders.scheduled(reminder) == []
