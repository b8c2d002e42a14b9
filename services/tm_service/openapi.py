"""The OpenAPI document, completed with what the routes cannot say themselves.

FastAPI derives each operation from its route; this adds what applies to
many at once, so the document lists every status the API can answer:

- every `/api/` operation can answer 400, 401, 403 (an inactive tenant, or
  not an administrator), 429 (with `Retry-After` and the `RateLimit`
  fields) and 503; those with a body 413 as well;
- FastAPI's default 422 is dropped: invalid input is 400 here, and 422 is
  only the batch's reused idempotency key, which its route documents;
- the batch's operations are documented one kind at a time, although the
  route validates each on its own;
- the `X-API-Key` scheme of the administrators' routes.

Served at `/openapi.json`, read at `/docs`.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from tm_service import schemas

_FAILURE = {"$ref": "#/components/schemas/Failure"}
_STRING = {"schema": {"type": "string"}}

DESCRIPTION = """\
Every answer is an envelope: `{"success": true, "data": ..., "meta": {...}}`
or `{"success": false, "error": {"code", "message", "details", "requestId",
"timestamp"}}`. Send `X-Request-ID` to name a request in the service's logs;
it is echoed, or one is made.

Limits: 60 calls a minute per user, 100 a minute per client address with
bursts to 200, 100 task creations an hour and 1000 a day per user (a
tenant's quotas may differ). Answers that met a limit carry `RateLimit` and
`RateLimit-Policy`; over a limit the answer is 429 with `Retry-After`.
"""


def _failure(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _FAILURE}},
    }
    if headers:
        answer["headers"] = headers

    return answer


_COMMON = {
    "400": _failure("Invalid input: one detail per field"),
    "401": _failure("No valid bearer token (or API key)"),
    "403": _failure("The tenant is inactive, or the route is not the caller's"),
    "429": _failure(
        "Over a rate limit",
        {
            "Retry-After": {"description": "seconds to wait", **_STRING},
            "RateLimit": {"description": "the limit that refused", **_STRING},
            "RateLimit-Policy": {"description": "the limits met", **_STRING},
        },
    ),
    "503": _failure(
        "MongoDB (or Redis, for an idempotency key) is unavailable",
        {"Retry-After": {"description": "seconds to wait", **_STRING}},
    ),
}
_WITH_BODY = {"413": _failure("The body is larger than the service accepts")}


def complete(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the statuses, schemes and batch operations FastAPI leaves out."""
    components = doc.setdefault("components", {})
    found = components.setdefault("schemas", {})

    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            answers = operation.setdefault("responses", {})
            default_422 = answers.get("422", {})
            if "HTTPValidationError" in str(default_422):
                del answers["422"]
            if path.startswith("/api/"):
                for status, answer in _COMMON.items():
                    answers.setdefault(status, answer)
                if method in ("post", "put", "patch"):
                    for status, answer in _WITH_BODY.items():
                        answers.setdefault(status, answer)
            if path.startswith("/api/v1/admin/"):
                operation["security"] = [{"HTTPBearer": []}, {"TenantApiKey": []}]
    if "/readyz" in doc.get("paths", {}):
        doc["paths"]["/readyz"]["get"]["responses"].setdefault(
            "503", _failure("MongoDB, Redis or Kafka is down")
        )
    for unused in ("HTTPValidationError", "ValidationError"):
        found.pop(unused, None)

    # Each kind of batch operation, as the client should write it.
    operation_schema = TypeAdapter(schemas.BatchOperation).json_schema(
        ref_template="#/components/schemas/{model}"
    )
    for name, schema in operation_schema.pop("$defs", {}).items():
        found.setdefault(name, schema)
    batch = found.get("BatchRequest")
    if batch is not None:
        batch["properties"]["operations"]["items"] = operation_schema

    components.setdefault("securitySchemes", {})["TenantApiKey"] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "A tenant's API key, from the Secret the operator issues",
    }

    return doc


def install(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    summary=app.summary,
                    description=DESCRIPTION,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]
