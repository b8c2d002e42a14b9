"""Logs: one JSON line per request, with no phone, address or token in it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
import structlog
from test_service_fakes import bearer, body, serve, settings, token

from tm_service import logs, responses


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure(settings(log_format="json"), stream=stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = False
        structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


def test_masking_hides_tokens_addresses_and_phone_numbers() -> None:
    raw = token()
    text = f"Bearer {raw} for user@example.com at +14155550100, jwt {raw}"

    masked = logs.mask(text)

    assert raw not in masked
    assert "user@example.com" not in masked
    assert "+14155550100" not in masked
    assert masked.startswith("Bearer ***")


async def test_each_request_writes_one_line_with_its_route_and_tenant(
    captured: io.StringIO,
) -> None:
    async with serve() as http:
        created = await http.post(
            "/api/v1/visitor/time/tasks",
            json=body(),
            headers={**bearer(), "X-Request-ID": "trace-1"},
        )
        await http.get(f"/api/v1/visitor/time/tasks/{created.json()['data']['_id']}")

    requests = [line for line in _lines(captured) if line["event"] == "request"]
    assert len(requests) == 2
    first, second = requests
    assert first["method"] == "POST"
    assert first["route"] == "/api/v1/visitor/time/tasks"
    assert first["status"] == 201
    assert first["request_id"] == "trace-1"
    assert first["tenant"] == "tenant-1"
    assert first["level"] == "info"
    assert isinstance(first["duration_ms"], float)
    assert second["route"] == "/api/v1/visitor/time/tasks/{task_id}"
    assert second["status"] == 401
    assert second["auth_error"] == "no bearer token"
    text = captured.getvalue()
    assert "+14155550100" not in text
    assert "user@example.com" not in text


def test_standard_library_records_are_masked_and_rendered_as_json(
    captured: io.StringIO,
) -> None:
    logging.getLogger("aiokafka").warning(
        "sending to %s failed", "+14155550100", extra={"to": "user@example.com"}
    )

    [line] = _lines(captured)
    assert line["event"] == "sending to +*** failed"
    assert line["to"] == "***@***"
    assert line["logger"] == "aiokafka"


def _without_time(line: str) -> str:
    return re.sub(r'"timestamp":"[^"]+"', "", line)


async def test_the_daily_view_fronts_line_is_the_request_contexts_line(
    captured: io.StringIO,
) -> None:
    from tm_service import fast_views, middleware

    # A request id a client chose to look like a token is masked in both.
    sent_id = "eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"
    made_id = responses.new_request_id()
    durations = [0.5, 0.0, 0.07, 12.34, 1234.5, 100000.0]
    ids = [(sent_id, True), (made_id, False)] * 3
    for duration_ms, (request_id, sent) in zip(durations, ids, strict=True):
        found = fast_views._Found(
            start={},
            body=b"{}",
            request_id=request_id,
            request_id_sent=sent,
            tenant_id="acme",
            tenant_field=fast_views._tenant_field("acme"),
            stamp=responses.now(),
        )
        fast_views._log_request(found, duration_ms=duration_ms)
        await asyncio.sleep(2 * logs.WRITE_AFTER_S)  # its wait over, it is written
        with structlog.contextvars.bound_contextvars(request_id=request_id):
            middleware.log.info(
                "request",
                method="GET",
                route=fast_views.DAILY_PATH,
                status=200,
                duration_ms=duration_ms,
                tenant="acme",
            )

    lines = captured.getvalue().splitlines()
    assert len(lines) == 2 * len(durations)
    for front, context in zip(lines[::2], lines[1::2], strict=True):
        assert _without_time(front) == _without_time(context)
        assert sent_id not in front
        assert json.loads(front)["timestamp"].endswith("Z")


async def test_lines_written_soon_go_before_any_later_line(
    captured: io.StringIO,
) -> None:
    logs.write_soon('{"event":"first"}\n')
    logs.write_soon('{"event":"second"}\n')
    logging.getLogger("aiokafka").warning("third")
    structlog.get_logger("x").info("fourth")
    logs.write_soon('{"event":"fifth"}\n')
    assert "fifth" not in captured.getvalue()
    await asyncio.sleep(2 * logs.WRITE_AFTER_S)

    assert [line["event"] for line in _lines(captured)] == [
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
    ]


async def test_lines_go_at_once_when_too_many_wait(captured: io.StringIO) -> None:
    for index in range(logs._WAITING_MAX):
        logs.write_soon(f'{{"event":"line {index}"}}\n')

    written = _lines(captured)

    assert len(written) == logs._WAITING_MAX
    assert written[-1]["event"] == f"line {logs._WAITING_MAX - 1}"
