"""Probes: `/healthz` says the process is alive, `/readyz` that it can serve."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from tm_service import responses

router = APIRouter(tags=["health"])

Check = Callable[[], Awaitable[None]]
"""Raises, or does not return in time, when a server is down."""


@router.get("/healthz", summary="The process is alive")
async def healthz(request: Request) -> Response:
    return responses.ok(request, {"status": "alive"})


@router.get("/readyz", summary="MongoDB, Redis and Kafka answer")
async def readyz(request: Request) -> Response:
    checks: dict[str, Check] = request.app.state.readiness
    timeout = request.app.state.settings.readiness_timeout_ms / 1000
    names = list(checks)
    outcomes = await asyncio.gather(
        *(probe(checks[name], seconds=timeout) for name in names)
    )
    down = [(name, why) for name, why in zip(names, outcomes, strict=True) if why]

    if down:
        return responses.failure(
            request,
            status_code=503,
            code="SERVICE_UNAVAILABLE",
            message="not ready: " + ", ".join(name for name, _ in down) + " down",
            details=down,
        )
    return responses.ok(request, {name: "up" for name in names})


async def probe(check: Check, *, seconds: float) -> str | None:
    """None when the check passed, else why it failed."""
    try:
        async with asyncio.timeout(seconds):
            await check()
    except TimeoutError:
        return f"no answer within {seconds:g}s"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # Down, misconfigured or refusing: readiness reports it, whatever it is.
        return f"unreachable: {type(exc).__name__}"

    return None
