"""The envelopes every answer of the API comes in.

Success: `{"success": true, "data": ..., "meta": {"requestId", "timestamp",
"version": "v1"}}`. Failure: `{"success": false, "error": {"code", "message",
"details": [{"field", "message"}], "requestId", "timestamp"}}`.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Scope

from tm_service import schemas


class JSONBytes(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def new_request_id() -> str:
    return f"req_{secrets.token_hex(8)}"


def request_id(scope: Scope | HTTPConnection) -> str:
    """The id the request-context middleware gave this request."""
    state = (scope.scope if isinstance(scope, HTTPConnection) else scope).get("state")
    value = state.get("request_id") if isinstance(state, dict) else None

    return value if isinstance(value, str) else new_request_id()


def now() -> datetime:
    return datetime.now(UTC)


def ok(
    connection: HTTPConnection,
    data: Any,
    *,
    status_code: int = 200,
) -> JSONBytes:
    body = schemas.Success[Any](
        data=data,
        meta=schemas.Meta(request_id=request_id(connection), timestamp=now()),
    )

    return JSONBytes(body.model_dump(mode="json"), status_code=status_code)


def _clean(text: str, limit: int) -> str:
    # Field names can come from the client (an unknown key); keep them short
    # and encodable, whatever bytes were sent.
    return text.encode("utf-8", "replace").decode("utf-8")[:limit]


def ok_rendered(
    connection: Scope | HTTPConnection, data: bytes, *, status_code: int = 200
) -> Response:
    """The success envelope around `data` that is already JSON (a cached view).

    The envelope is spliced around the bytes, and its `meta` written as
    `schemas.Meta` renders (a unit test holds the two to the same bytes).
    """
    body = rendered_envelope(data, request_id=request_id(connection), timestamp=now())

    return Response(body, status_code=status_code, media_type="application/json")


def rendered_envelope(data: bytes, *, request_id: str, timestamp: datetime) -> bytes:
    """The bytes of `ok_rendered`'s answer."""
    meta = orjson.dumps(
        {"requestId": request_id, "timestamp": timestamp, "version": "v1"},
        option=orjson.OPT_UTC_Z,
    )

    return b"".join((b'{"success":true,"data":', data, b',"meta":', meta, b"}"))


def error_body(
    scope: Scope | HTTPConnection,
    *,
    code: str,
    message: str,
    details: Sequence[tuple[str, str]] = (),
) -> schemas.ErrorBody:
    return schemas.ErrorBody(
        code=code,
        message=_clean(message, 500),
        details=[
            schemas.ErrorDetail(field=_clean(f, 200), message=_clean(m, 500))
            for f, m in details
        ],
        request_id=request_id(scope),
        timestamp=now(),
    )


def failure(
    scope: Scope | HTTPConnection,
    *,
    status_code: int,
    code: str,
    message: str,
    details: Sequence[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONBytes:
    body = schemas.Failure(
        error=error_body(scope, code=code, message=message, details=details)
    )

    return JSONBytes(
        body.model_dump(mode="json"), status_code=status_code, headers=headers
    )
