"""The request context: id, body limit, the one log line, and the last resort.

For every HTTP request this middleware

- takes the request id from `X-Request-ID` (sanitized, at most 64
  characters) or makes one, and echoes it in the response header;
- refuses a body over the configured size with 413 before anything parses it;
- answers any exception nobody handled with a 500 INTERNAL_ERROR envelope,
  logging the traceback but never sending it;
- writes one INFO line when the request is done: method, route template,
  status, duration, request id and tenant (and the limit that refused it),
  and counts it in `tm_http_requests_total` and
  `tm_http_request_duration_seconds`;
- adds the headers a step of the request left for the answer (the
  `RateLimit` fields of the limits it met).
"""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tm_service import responses
from tm_service.metrics import Metrics

REQUEST_LOGGER = "tm_service.requests"
log = structlog.get_logger(REQUEST_LOGGER)

_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
REQUEST_ID_MAX = 64


def request_id_of(sent: str) -> str:
    """The request's id: the one sent, sanitized and cut short, or a new one."""
    kept = _UNSAFE.sub("", sent)[:REQUEST_ID_MAX] if sent else ""
    return kept or responses.new_request_id()


def request_id_from(headers: Headers) -> str:
    return request_id_of(headers.get("x-request-id", ""))


class RequestContext:
    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        headers = Headers(scope=scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        # The daily view's front gives a request it leaves to the stack its id.
        request_id = state.get("request_id") or request_id_from(headers)
        state["request_id"] = request_id
        started = time.perf_counter()
        response: dict[str, Any] = {"status": 500, "started": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["started"] = True
                headers = MutableHeaders(scope=message)
                headers["X-Request-ID"] = request_id
                for name, value in state.get("response_headers", {}).items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        # NB: bound and reset by hand; the context manager's generator cost
        # more than the binding, on every request.
        bound = structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            if not _announces_body(headers):
                # HTTP/1.1 sends no body here; the app reads its end itself.
                await self.app(scope, receive, send_with_id)
            elif (body := await self._read_body(headers, receive)) is None:
                too_large = responses.failure(
                    scope,
                    status_code=413,
                    code="PAYLOAD_TOO_LARGE",
                    message=f"the body exceeds {self.max_body_bytes} bytes",
                )
                await too_large(scope, receive, send_with_id)
            else:
                await self.app(scope, _replay(body, receive), send_with_id)
        except Exception:
            # A bug: log it with its traceback, answer without it.
            log.exception("unhandled error", method=scope["method"])
            if not response["started"]:
                crashed = responses.failure(
                    scope,
                    status_code=500,
                    code="INTERNAL_ERROR",
                    message="an unexpected error occurred",
                )
                await crashed(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            found = {
                k: state[k]
                for k in ("tenant", "auth_error", "rate_limited")
                if k in state
            }
            log.info(
                "request",
                method=scope["method"],
                route=route,
                status=response["status"],
                duration_ms=round(seconds * 1000, 2),
                **found,
            )
            if self.metrics is not None:
                self.metrics.observe_request(
                    route=route,
                    method=scope["method"],
                    status=response["status"],
                    seconds=seconds,
                )
            structlog.contextvars.reset_contextvars(**bound)

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        """The whole body, or None when it is larger than allowed."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None

        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break

        return b"".join(chunks)


def _announces_body(headers: Headers) -> bool:
    """Whether the request says a body follows (a length or chunks)."""
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body, wait for what the server says next (a disconnect).
        return await receive()

    return replay
