"""What an operator on call sees: metrics, probes and log lines of both processes."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.platform import TASKS, Platform, for_task

pytestmark = pytest.mark.e2e


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus page, by name and sorted labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(page: dict[Any, float], name: str, **labels: str) -> float:
    return page.get((name, tuple(sorted(labels.items()))), 0.0)


def json_lines(output: str) -> list[dict[str, Any]]:
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_worker_counts_its_deliveries_and_serves_health_and_metrics(
    platform: Platform,
) -> None:
    worker_url = f"http://127.0.0.1:{platform.env['TM_STREAMS_WEB_PORT']}"
    task = platform.create(platform.task(due_in=timedelta(seconds=2)))
    cancelled = platform.create(
        platform.task(due_in=timedelta(minutes=5), channels=["sms"])
    )
    platform.http.delete(f"{TASKS}/{cancelled['_id']}", headers=platform.headers())

    platform.wait_for_messages(for_task(task), count=2)
    platform.wait_for_task(task["_id"], lambda t: t["reminder"]["status"] == "sent")
    with httpx.Client(base_url=worker_url, timeout=10) as worker:
        health = worker.get("/healthz")
        page = samples(worker.get("/metrics").text)

    assert health.status_code == 200
    # The warm-up sent one e-mail before this test's two messages.
    assert value(page, "tm_reminders_sent_total", channel="email") == 2
    assert value(page, "tm_reminders_sent_total", channel="sms") == 1
    assert value(page, "tm_reminders_scheduled_total", channel="sms") == 2
    assert value(page, "tm_reminders_cancelled_total", channel="sms") == 1
    assert value(page, "tm_delivery_lateness_seconds_count", channel="sms") == 1
    deliveries = [
        line
        for line in json_lines(platform.worker.output() if platform.worker else "")
        if line.get("event") == "delivery" and line.get("task_id") == task["_id"]
    ]
    assert sorted(line["channel"] for line in deliveries) == ["email", "sms"]
    assert all(line["result"] == "sent" for line in deliveries)
    assert "+14155550100" not in (platform.worker.output() if platform.worker else "")


def test_service_logs_one_masked_line_per_request_and_counts_it(
    platform: Platform,
) -> None:
    body = platform.task(due_in=timedelta(minutes=30), email="carol@example.com")

    created = platform.http.post(
        TASKS,
        json=body,
        headers={**platform.headers(), "X-Request-ID": "req-e2e-observed"},
    )
    page = samples(platform.http.get("/metrics").text)

    assert created.status_code == 201
    assert created.headers["X-Request-ID"] == "req-e2e-observed"
    route = TASKS
    assert (
        value(page, "tm_http_requests_total", route=route, method="POST", status="201")
        >= 1
    )
    assert (
        value(
            page,
            "tm_http_request_duration_seconds_count",
            route=route,
            method="POST",
        )
        >= 1
    )
    lines = [
        line
        for line in json_lines(platform.service.output())
        if line.get("request_id") == "req-e2e-observed" and line["event"] == "request"
    ]
    assert len(lines) == 1
    assert lines[0]["route"] == route
    assert lines[0]["status"] == 201
    assert lines[0]["tenant"] == "acme"
    assert isinstance(lines[0]["duration_ms"], float | int)
    output = platform.service.output()
    assert "carol@example.com" not in output
    assert platform.token() not in output


def test_a_cached_daily_view_is_answered_in_front_of_the_routes_and_logged_alike(
    platform: Platform,
) -> None:
    day = platform.task(due_in=timedelta(minutes=30))["taskDate"]
    daily = f"{TASKS}/daily?date={day}"
    platform.http.get(daily, headers=platform.headers())  # fills the cache

    answer = platform.http.get(
        daily, headers={**platform.headers(), "X-Request-ID": "req-e2e-front"}
    )
    page = samples(platform.http.get("/metrics").text)

    assert answer.status_code == 200
    assert answer.headers["X-Request-ID"] == "req-e2e-front"
    assert answer.headers["RateLimit-Policy"].startswith('"user";')
    assert answer.json()["meta"]["requestId"] == "req-e2e-front"
    assert value(page, "tm_fast_view_requests_total", result="served") >= 1
    route = f"{TASKS}/daily"
    assert (
        value(page, "tm_http_requests_total", route=route, method="GET", status="200")
        >= 2
    )
    # Request lines wait a few milliseconds to be written together.
    platform.service.wait_for_line('"request_id":"req-e2e-front"', within=5)
    [line] = [
        line
        for line in json_lines(platform.service.output())
        if line.get("request_id") == "req-e2e-front" and line["event"] == "request"
    ]
    assert (line["route"], line["status"], line["tenant"]) == (route, 200, "acme")
