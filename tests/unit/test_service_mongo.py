"""The filter check `update_where` makes itself where the server cannot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tm_adapters import mongo

DUE = datetime(2030, 1, 15, 8, 30, tzinfo=UTC)
TASK = {
    "_id": "t1",
    "tenantId": "tenant-1",
    "writeSeq": 3,
    "deletedAt": None,
    "reminder": {
        "revision": 2,
        "deliveries": {"sms": {"state": "scheduled", "dueAt": DUE}},
    },
}


@pytest.mark.parametrize(
    "condition",
    [
        {},
        {"tenantId": "tenant-1", "writeSeq": 3},
        {"deletedAt": None},
        {"completedAt": None},
        {"reminder.revision": 2},
        {"reminder.deliveries.sms.state": {"$in": ["scheduled", "sending"]}},
        {"reminder.deliveries.sms.dueAt": {"$lte": DUE, "$gt": DUE - timedelta(1)}},
        {"reminder.deliveries.sms.dueAt": {"$lt": DUE + timedelta(seconds=1)}},
        {"reminder.deliveries.sms.dueAt": {"$gte": DUE.replace(tzinfo=None)}},
        {"writeSeq": {"$ne": 4}},
    ],
)
def test_a_document_matches_what_mongodb_would_match(condition: dict) -> None:
    assert mongo.matches(TASK, condition)


@pytest.mark.parametrize(
    "condition",
    [
        {"writeSeq": 4},
        {"tenantId": "tenant-2"},
        {"deletedAt": {"$ne": None}},
        {"reminder.revision": 1},
        {"reminder.deliveries.email.state": "scheduled"},
        {"reminder.deliveries.sms.state": {"$in": ["sent"]}},
        {"reminder.deliveries.sms.dueAt": {"$lt": DUE}},
        {"reminder.deliveries.sms.dueAt": {"$gt": DUE}},
        {"reminder.missing": {"$gte": 1}},
        {"reminder.revision.deeper": 2},
    ],
)
def test_a_document_does_not_match_what_mongodb_would_not(condition: dict) -> None:
    assert not mongo.matches(TASK, condition)


def test_an_operator_it_does_not_know_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\$regex"):
        mongo.matches(TASK, {"tenantId": {"$regex": "^t"}})
