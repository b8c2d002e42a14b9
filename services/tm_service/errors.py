"""Errors of the API and their translation into error envelopes.

ServiceError
├── Unauthorized          no valid bearer token or API key      401 UNAUTHORIZED
├── Forbidden             valid, but not allowed this route     403 FORBIDDEN
├── TenantInactive        the tenant is deactivated (or, where  403 TENANT_INACTIVE
│                         registration is required, unknown)
├── RateLimited           over a limit; wait `Retry-After`      429 RATE_LIMITED
└── IdempotencyRefused    an Idempotency-Key cannot be honoured now
    ├── KeyReused         same key, another body       422 IDEMPOTENCY_KEY_REUSED
    ├── KeyInUse          the key's request is running 409 IDEMPOTENCY_KEY_IN_USE
    └── KeysUnavailable   Redis is down; retry later   503 SERVICE_UNAVAILABLE

The domain's errors are answered here too, by how a client should react:

    InvalidInput        fix the fields named in `details`   400 VALIDATION_ERROR
    NotFound            no such task (or user) for caller   404 NOT_FOUND
    NotAllowed          not yours to do (an assigned task)  403 FORBIDDEN
    Conflict            read the task again, then retry     409 CONFLICT
    StoreUnavailable    try again in a moment               503 SERVICE_UNAVAILABLE

Input that FastAPI refuses (malformed JSON, wrong types, unknown fields) is a
400 VALIDATION_ERROR with one detail per field, named in camelCase and dotted
for nested fields (`reminder.phone`). Anything else is a 500 INTERNAL_ERROR
without a traceback, answered by the request-context middleware.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Scope

from tm_domain import limits, storage
from tm_domain.errors import Conflict, InvalidInput, NotAllowed, NotFound, Problem
from tm_service import responses


class ServiceError(Exception):
    """Base of the errors the API raises itself."""


class Unauthorized(ServiceError):
    """The request carries no bearer token the service accepts.

    `reason` is for the log only: a client learns nothing about why.
    """

    def __init__(self, reason: str, *, token_sent: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token_sent = token_sent


class Forbidden(ServiceError):
    """The caller is known but may not use this route (an administrator's)."""


class TenantInactive(ServiceError):
    """The caller's tenant may not use the service now."""


class RateLimited(ServiceError):
    """A limit refused the request; `verdict` says which and for how long."""

    def __init__(self, verdict: limits.Verdict, *, scope: str) -> None:
        super().__init__(f"rate limit {scope}")
        self.verdict = verdict
        self.scope = scope


class IdempotencyRefused(ServiceError):
    """An `Idempotency-Key` that cannot be honoured; base of the three below."""

    status_code = 409
    code = "CONFLICT"
    headers: ClassVar[dict[str, str] | None] = None


class KeyReused(IdempotencyRefused):
    status_code = 422
    code = "IDEMPOTENCY_KEY_REUSED"


class KeyInUse(IdempotencyRefused):
    status_code = 409
    code = "IDEMPOTENCY_KEY_IN_USE"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


class KeysUnavailable(IdempotencyRefused):
    status_code = 503
    code = "SERVICE_UNAVAILABLE"
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "5"}


def rate_limit_headers(verdict: limits.Verdict) -> dict[str, str]:
    """`RateLimit-Policy` and `RateLimit` for the limits a request met."""
    binding = verdict.binding
    if binding is None:
        return {}

    return {
        "RateLimit-Policy": rate_limit_policy(verdict),
        "RateLimit": binding.header(),
    }


def rate_limit_policy(verdict: limits.Verdict) -> str:
    """The `RateLimit-Policy` of the limits a request met."""
    decisions = verdict.decisions
    if len(decisions) == 1:
        return decisions[0].limit.policy
    return ", ".join(d.limit.policy for d in decisions)


_STATUS_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE",
    429: "RATE_LIMITED",
    503: "SERVICE_UNAVAILABLE",
}

_MESSAGES = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request",
    "model_attributes_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
}


def one_per_field(problems: Iterable[Problem]) -> list[tuple[str, str]]:
    """Merge problems so that each field appears once, in first-seen order."""
    merged: dict[str, list[str]] = {}
    for problem in problems:
        messages = merged.setdefault(problem.field, [])
        if problem.message not in messages:
            messages.append(problem.message)

    return [(name, "; ".join(messages)) for name, messages in merged.items()]


def problems_from_pydantic(errors: Sequence[Any]) -> list[Problem]:
    """The problems in FastAPI's validation errors, named as the API names them."""
    problems: list[Problem] = []
    for error in errors:
        loc = tuple(error.get("loc") or ())
        # The first element says where the value was (body, query, path);
        # list positions go into the message so a field is named once.
        names = [str(part) for part in loc[1:] if isinstance(part, str)]
        positions = [str(part) for part in loc[1:] if isinstance(part, int)]
        field = ".".join(names) or (str(loc[0]) if loc else "body")

        kind = error.get("type", "")
        if kind == "json_invalid":
            reason = (error.get("ctx") or {}).get("error") or "malformed"
            message = f"is not valid JSON: {reason}"
        else:
            message = _MESSAGES.get(kind) or str(error.get("msg", "is invalid"))
            message = message.removeprefix("Value error, ")
        if positions and kind != "json_invalid":
            message = f"item {positions[-1]}: {message}"
        problems.append(Problem(field, message))

    return problems


def invalid_input(request: Request, problems: Iterable[Problem]) -> Response:
    details = one_per_field(problems)
    if len(details) == 1:
        message = f"{details[0][0]} {details[0][1]}"
    else:
        message = f"{len(details)} fields are invalid"

    return responses.failure(
        request,
        status_code=400,
        code="VALIDATION_ERROR",
        message=message,
        details=details,
    )


async def _on_request_validation(
    request: Request, exc: RequestValidationError
) -> Response:
    return invalid_input(request, problems_from_pydantic(exc.errors()))


async def _on_invalid_input(request: Request, exc: InvalidInput) -> Response:
    return invalid_input(request, exc.problems)


async def _on_not_found(request: Request, exc: NotFound) -> Response:
    return responses.failure(
        request, status_code=404, code="NOT_FOUND", message=exc.message
    )


async def _on_not_allowed(request: Request, exc: NotAllowed) -> Response:
    return responses.failure(
        request, status_code=403, code="FORBIDDEN", message=str(exc)
    )


async def _on_conflict(request: Request, exc: Conflict) -> Response:
    return responses.failure(
        request,
        status_code=409,
        code="CONFLICT",
        message=str(exc) or "the task changed since it was read; read it again",
    )


async def _on_unavailable(request: Request, exc: storage.StoreUnavailable) -> Response:
    return responses.failure(
        request,
        status_code=503,
        code="SERVICE_UNAVAILABLE",
        message="the task store is unavailable; try again shortly",
        headers={"Retry-After": "5"},
    )


async def _on_unauthorized(request: Request, exc: Unauthorized) -> Response:
    request.scope.setdefault("state", {})["auth_error"] = exc.reason
    challenge = 'Bearer error="invalid_token"' if exc.token_sent else "Bearer"

    return responses.failure(
        request,
        status_code=401,
        code="UNAUTHORIZED",
        message="a valid bearer token is required",
        headers={"WWW-Authenticate": challenge},
    )


async def _on_forbidden(request: Request, exc: Forbidden) -> Response:
    return responses.failure(
        request, status_code=403, code="FORBIDDEN", message=str(exc)
    )


async def _on_tenant_inactive(request: Request, exc: TenantInactive) -> Response:
    return responses.failure(
        request, status_code=403, code="TENANT_INACTIVE", message=str(exc)
    )


def too_many(scope: Scope | Request, verdict: limits.Verdict) -> Response:
    """The 429 answer to a request a limit refused."""
    binding = verdict.binding
    retry_after = 1 if binding is None else max(1, binding.retry_after_s)
    name = "a rate limit" if binding is None else f"the {binding.limit.name} limit"

    return responses.failure(
        scope,
        status_code=429,
        code="RATE_LIMITED",
        message=f"{name} is reached; retry in {retry_after} s",
        headers={"Retry-After": str(retry_after), **rate_limit_headers(verdict)},
    )


async def _on_rate_limited(request: Request, exc: RateLimited) -> Response:
    return too_many(request, exc.verdict)


async def _on_idempotency(request: Request, exc: IdempotencyRefused) -> Response:
    return responses.failure(
        request,
        status_code=exc.status_code,
        code=exc.code,
        message=str(exc),
        headers=exc.headers,
    )


async def _on_http_error(request: Request, exc: HTTPException) -> Response:
    code = _STATUS_CODES.get(exc.status_code, "HTTP_ERROR")
    if exc.status_code == 404:
        message = "no such resource"
    elif exc.status_code == 400:
        message = "the body could not be read as JSON"
    else:
        message = str(exc.detail)

    return responses.failure(
        request,
        status_code=exc.status_code,
        code=code,
        message=message,
        headers=exc.headers,
    )


def install(app: FastAPI) -> None:
    """Answer every known error with an error envelope."""
    app.add_exception_handler(RequestValidationError, _on_request_validation)
    app.add_exception_handler(InvalidInput, _on_invalid_input)
    app.add_exception_handler(NotFound, _on_not_found)
    app.add_exception_handler(Conflict, _on_conflict)
    app.add_exception_handler(NotAllowed, _on_not_allowed)
    app.add_exception_handler(storage.StoreUnavailable, _on_unavailable)
    app.add_exception_handler(Unauthorized, _on_unauthorized)
    app.add_exception_handler(Forbidden, _on_forbidden)
    app.add_exception_handler(TenantInactive, _on_tenant_inactive)
    app.add_exception_handler(RateLimited, _on_rate_limited)
    app.add_exception_handler(IdempotencyRefused, _on_idempotency)
    app.add_exception_handler(HTTPException, _on_http_error)
