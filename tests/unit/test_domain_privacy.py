"""The privacy rules: retention arithmetic, audit records, retrying a reminder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tm_domain import privacy, reminders
from tm_domain.errors import InvalidInput

NOW = datetime(2030, 1, 15, 8, 30, tzinfo=UTC)


def test_purge_cutoff_is_the_retention_window_before_now() -> None:
    cutoff = privacy.purge_cutoff(NOW, retention_days=30)

    assert cutoff == NOW - timedelta(days=30)
    assert privacy.purge_after(cutoff, retention_days=30) == NOW


def test_negative_retention_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        privacy.purge_cutoff(NOW, retention_days=-1)


def test_audit_record_refuses_a_field_that_could_carry_content() -> None:
    with pytest.raises(ValueError, match="email"):
        privacy.audit_record(
            privacy.AuditAction.ERASED,
            record_id="r1",
            tenant_id="t",
            user_id="u",
            actor=privacy.SCHEDULE,
            at=NOW,
            email="ada@example.com",
        )


def test_audit_record_holds_ids_counts_and_the_actor() -> None:
    record = privacy.audit_record(
        privacy.AuditAction.PURGED,
        record_id="r1",
        tenant_id="t",
        user_id=None,
        actor=privacy.SCHEDULE,
        at=NOW,
        counts={"tasks": 2},
    )

    assert record["action"] == "DataPurged"
    assert record["actor"] == {"id": "tm-service", "role": "system", "via": "schedule"}
    assert record["counts"] == {"tasks": 2}


def _reminder(**states: str) -> dict[str, object]:
    return {
        "enabled": True,
        "revision": 3,
        "deliveries": {
            channel: {**reminders.new_delivery(NOW), "state": state, "attempts": 5}
            for channel, state in states.items()
        },
    }


def test_retry_schedules_failed_deliveries_afresh_under_a_new_revision() -> None:
    retried = reminders.retry(_reminder(sms="failed", email="sent"), now=NOW)

    assert retried["revision"] == 4
    assert retried["deliveries"]["sms"]["state"] == "scheduled"
    assert retried["deliveries"]["sms"]["attempts"] == 0
    assert retried["deliveries"]["email"]["state"] == "sent"


@pytest.mark.parametrize(
    "states", [{"sms": "sent"}, {"sms": "failed", "email": "scheduled"}]
)
def test_retry_refuses_a_reminder_without_a_settled_failure(
    states: dict[str, str],
) -> None:
    with pytest.raises(InvalidInput):
        reminders.retry(_reminder(**states), now=NOW)
