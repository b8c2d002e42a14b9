"""The daily view's front within the request's context: its log lines, the
tenant look-up and the limits it hands to the stack.

Each test runs the same requests through a replica with the front and one
without (`TM_VIEW_FAST_PATH=false`), and holds the two to the same result.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import structlog

from tests.integration.conftest import TASKS
from tests.integration.test_service_fast_views import forget_limits, served
from tm_domain import tenants
from tm_service import logs
from tm_service.settings import ServiceSettings

pytestmark = pytest.mark.integration

Bearer = Callable[..., dict[str, str]]
DAILY = f"{TASKS}/daily?date=2030-01-15"


@pytest.fixture
async def captured(settings: ServiceSettings) -> AsyncIterator[io.StringIO]:
    """The service's log lines, as JSON, in a stream of the test's own."""
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure(settings.model_copy(update={"log_format": "json"}), stream=stream)
    try:
        yield stream
    finally:
        await asyncio.sleep(2 * logs.WRITE_AFTER_S)
        root.handlers[:], level = saved
        root.setLevel(level)
        logging.getLogger("uvicorn.access").disabled = False
        structlog.reset_defaults()
        logs._Lines.handler = None
        logs._Lines.info_as_json = False


async def lines_of(stream: io.StringIO) -> list[dict[str, Any]]:
    """The lines written so far (those waiting included), and no more."""
    await asyncio.sleep(2 * logs.WRITE_AFTER_S)
    text = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    return [json.loads(line) for line in text.splitlines() if line]


def service_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The service's own lines, without their time."""
    kept = []
    for line in lines:
        if str(line.get("logger", "")).startswith(("tm_service", "tm_domain")):
            kept.append(
                {k: v for k, v in line.items() if k not in ("timestamp", "duration_ms")}
            )
    return kept


class FlakyDirectory:
    """A tenant registry that answers until it is told to fail."""

    def __init__(self) -> None:
        self.down = False
        self.reads = 0

    async def get(self, tenant_id: str) -> tenants.Tenant | None:
        self.reads += 1
        if self.down:
            raise ConnectionError("registry unreachable")
        return tenants.Tenant(tenant_id=tenant_id, display_name=tenant_id)


async def test_the_registry_warning_of_a_cached_view_carries_the_request_id(
    settings: ServiceSettings,
    started: Any,
    bearer: Bearer,
    example: Any,
    redis_client: Any,
    captured: io.StringIO,
) -> None:
    """MongoDB out, a tenant record expired: the fallback warning is logged
    within the request's context, with its id, as the stack logs it."""
    chosen = settings.model_copy(update={"tenant_cache_s": 0})
    routes_only = chosen.model_copy(update={"view_fast_path": False})
    headers = {**bearer(), "X-Request-ID": "registry-1"}
    found: dict[str, list[dict[str, Any]]] = {}

    for name, chosen_settings in (("front", chosen), ("stack", routes_only)):
        directory = FlakyDirectory()
        async with started(chosen_settings, tenants=directory) as (_, client):
            if name == "front":
                await client.post(TASKS, json=example(), headers=bearer())
            await client.get(DAILY, headers=bearer())  # the cache filled
            await forget_limits(redis_client, settings)
            await lines_of(captured)
            directory.down = True
            answer = await client.get(DAILY, headers=headers)
            found[name] = service_lines(await lines_of(captured))
            page = (await client.get("/metrics")).text
        assert answer.status_code == 200
        if name == "front":
            assert served(page) == {"served": 1.0, "passed": 1.0}

    assert found["front"] == found["stack"]


async def test_a_view_left_to_the_stack_reads_the_registry_and_warns_once(
    settings: ServiceSettings,
    started: Any,
    bearer: Bearer,
    example: Any,
    captured: io.StringIO,
) -> None:
    """A miss goes on to the stack, which uses the front's look-up of the
    tenant: with MongoDB out, one wait and one warning for the request."""
    chosen = settings.model_copy(update={"tenant_cache_s": 0})
    routes_only = chosen.model_copy(update={"view_fast_path": False})
    headers = {**bearer(), "X-Request-ID": "registry-2"}
    found: dict[str, tuple[int, list[dict[str, Any]]]] = {}

    for name, chosen_settings in (("front", chosen), ("stack", routes_only)):
        directory = FlakyDirectory()
        async with started(chosen_settings, tenants=directory) as (_, client):
            await client.get(
                f"{TASKS}/daily?date=2030-01-1{len(found)}", headers=bearer()
            )
            await lines_of(captured)
            directory.down, directory.reads = True, 0
            # A day not cached yet: a miss.
            answer = await client.get(
                f"{TASKS}/daily?date=2030-02-1{len(found)}", headers=headers
            )
            warnings = [
                line
                for line in service_lines(await lines_of(captured))
                if line["level"] == "warning"
            ]
            found[name] = (directory.reads, warnings)
        assert answer.status_code == 200

    assert found["front"] == found["stack"]


async def test_the_line_saying_limits_apply_again_carries_the_request_id(
    settings: ServiceSettings,
    started: Any,
    bearer: Bearer,
    example: Any,
    redis_client: Any,
    captured: io.StringIO,
) -> None:
    """After an outage of the limiter, the first request to take its limits
    says so; the stack says it within the request's context."""
    routes_only = settings.model_copy(update={"view_fast_path": False})
    headers = {**bearer(), "X-Request-ID": "limits-again-1"}
    found: dict[str, list[dict[str, Any]]] = {}

    for name, chosen in (("front", settings), ("stack", routes_only)):
        async with started(chosen) as (app, client):
            await client.get(DAILY, headers=bearer())  # the cache filled
            await forget_limits(redis_client, settings)
            await lines_of(captured)
            # As `Guard._take` leaves it when Redis was out (fail open).
            app.state.guard._limiter_down = True
            answer = await client.get(DAILY, headers=headers)
            found[name] = [
                line
                for line in service_lines(await lines_of(captured))
                if line["level"] == "warning"
            ]
        assert answer.status_code == 200

    assert found["stack"][0]["request_id"] == "limits-again-1"
    assert found["front"] == found["stack"]


async def test_a_failure_after_the_limits_were_taken_counts_them_once(
    settings: ServiceSettings,
    started: Any,
    bearer: Bearer,
    example: Any,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the front after the gate took the limits costs the request
    nothing: the stack answers it with the limits the front took."""
    from tm_service.quotas import Guard

    routes_only = settings.model_copy(update={"view_fast_path": False})
    async with started(routes_only) as (_, slow):
        await slow.get(DAILY, headers=bearer())  # the cache filled
        await forget_limits(redis_client, settings)
        through_routes = await slow.get(DAILY, headers=bearer())

    def broken(self: Guard, verdicts: Any) -> dict[str, str]:
        raise RuntimeError("a bug in the front, after the limits were taken")

    monkeypatch.setattr(Guard, "answered", broken)
    async with started(settings) as (_, fast):
        await forget_limits(redis_client, settings)
        answer = await fast.get(DAILY, headers=bearer())
        page = (await fast.get("/metrics")).text

    assert served(page) == {"served": 0.0, "passed": 1.0}
    assert answer.status_code == 200
    assert through_routes.headers["RateLimit"] == '"user";r=59;t=1'
    assert answer.headers["RateLimit"] == through_routes.headers["RateLimit"]
