"""Reminders from an HTTP request to the providers, by either driver.

Every test runs twice: on the platform as deployed (tm-service, Kafka and the
tm-streams worker) and on the single-process mode (`tmctl dev` on SQLite),
both sending to the same fake providers. The reminder rules are one; a
behaviour that differs between the two fails here.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.platform import TASKS, DevPlatform, Platform, for_task

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["servers", "dev"])
def platform(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Platform]:
    """The service and a warmed-up worker, as processes: the deployed pair on
    the servers, or the one process of `tmctl dev`."""
    if request.param == "servers":
        running = Platform(request.getfixturevalue("servers"), tmp_path)
    else:
        running = DevPlatform(tmp_path)
    try:
        running.start_service()
        running.start_worker()
        running.warm_up()
        yield running
    finally:
        running.close()


def due_instant(task: dict[str, Any]) -> float:
    return datetime.fromisoformat(task["reminder"]["sendAt"]).timestamp()


def settle(seconds: float) -> None:
    """Give a wrongly sent or doubled message the time to show up."""
    time.sleep(seconds)


def test_design_example_goes_out_once_on_each_channel_within_a_second(
    platform: Platform,
) -> None:
    task = platform.create(platform.task(due_in=timedelta(seconds=3)))

    messages = platform.wait_for_messages(for_task(task), count=2)
    settle(2)

    everything = [m for m in platform.providers.messages() if for_task(task)(m)]
    assert sorted(m["channel"] for m in everything) == ["email", "sms"]
    for message in everything:
        lateness = message["receivedAt"] - due_instant(task)
        assert 0 <= lateness < 1.0, (message["channel"], lateness)
    sms = next(m for m in messages if m["channel"] == "sms")
    assert sms["to"] == "+14155550100"
    assert sms["from"] == "+15005550006"

    stored = platform.wait_for_task(
        task["_id"], lambda t: t["reminder"]["status"] == "sent"
    )
    assert stored["reminder"]["status"] == "sent"
    assert stored["reminder"]["attempts"] == 2
    ids = {m["id"] for m in everything}
    assert {
        d["providerMessageId"] for d in stored["reminder"]["deliveries"].values()
    } == ids


@pytest.mark.parametrize("close", ["complete", "delete", "disable"])
def test_closed_task_or_disabled_reminder_sends_nothing(
    platform: Platform, close: str
) -> None:
    task = platform.create(platform.task(due_in=timedelta(seconds=3)))

    headers = platform.headers()
    if close == "complete":
        response = platform.http.patch(
            f"{TASKS}/{task['_id']}/complete", headers=headers
        )
        assert response.status_code == 200, response.text
    elif close == "delete":
        response = platform.http.delete(f"{TASKS}/{task['_id']}", headers=headers)
        assert response.status_code == 200, response.text
    else:
        platform.put(task, reminder={**task["reminder"], "enabled": False})
    settle(max(due_instant(task) - time.time(), 0) + 3)

    assert [m for m in platform.providers.messages() if for_task(task)(m)] == []
    if close != "delete":
        assert platform.get(task["_id"])["reminder"]["status"] in ("cancelled", None)
    else:
        gone = platform.http.get(f"{TASKS}/{task['_id']}", headers=headers)
        assert gone.status_code == 404


def test_moved_reminder_goes_out_at_its_new_time_only(platform: Platform) -> None:
    task = platform.create(platform.task(due_in=timedelta(seconds=3)))

    later = platform.task(due_in=timedelta(seconds=6))["reminder"]["sendAt"]
    moved = platform.put(task, reminder={**task["reminder"], "sendAt": later})
    messages = platform.wait_for_messages(for_task(task), count=2)
    settle(2)

    assert len([m for m in platform.providers.messages() if for_task(task)(m)]) == 2
    for message in messages:
        lateness = message["receivedAt"] - due_instant(moved)
        assert 0 <= lateness < 1.0, (message["channel"], lateness)


def test_worker_killed_between_scheduling_and_sending_loses_and_doubles_nothing(
    platform: Platform,
) -> None:
    tasks = [
        platform.create(platform.task(due_in=timedelta(seconds=4))) for _ in range(5)
    ]
    assert platform.worker is not None
    time.sleep(1.5)
    assert platform.providers.messages() == []

    platform.worker.kill()
    settle(max(due_instant(tasks[-1]) - time.time(), 0) + 1)
    assert platform.providers.messages() == []
    platform.start_worker()
    for task in tasks:
        platform.wait_for_messages(for_task(task), count=2, within=30)
    settle(3)

    for task in tasks:
        sent = [m for m in platform.providers.messages() if for_task(task)(m)]
        assert sorted(m["channel"] for m in sent) == ["email", "sms"]
        stored = platform.wait_for_task(
            task["_id"], lambda t: t["reminder"]["status"] == "sent"
        )
        for delivery in stored["reminder"]["deliveries"].values():
            assert delivery["state"] == "sent"
            assert delivery["attempts"] == 1
            assert delivery["latenessMs"] > 0


def test_provider_unavailable_twice_then_accepting_ends_sent_after_three_attempts(
    platform: Platform,
) -> None:
    platform.providers.script(status=503, count=2, provider="twilio")

    task = platform.create(platform.task(due_in=timedelta(seconds=2), channels=["sms"]))
    stored = platform.wait_for_task(
        task["_id"], lambda t: t["reminder"]["status"] == "sent", within=20
    )

    assert stored["reminder"]["status"] == "sent"
    assert stored["reminder"]["deliveries"]["sms"]["attempts"] == 3
    answers = [m["status"] for m in platform.providers.messages() if for_task(task)(m)]
    assert answers == [503, 503, 201]


def test_provider_refusal_fails_the_delivery_at_once(platform: Platform) -> None:
    platform.providers.script(status=400, count=1, provider="sendgrid")

    task = platform.create(
        platform.task(due_in=timedelta(seconds=2), channels=["email"])
    )
    stored = platform.wait_for_task(
        task["_id"], lambda t: t["reminder"]["status"] == "failed", within=20
    )
    settle(2)

    assert stored["reminder"]["deliveries"]["email"]["attempts"] == 1
    assert "400" in stored["reminder"]["lastError"]
    assert len([m for m in platform.providers.messages() if for_task(task)(m)]) == 1
