"""Batches: up to 100 task operations in one request, each answered apart.

The operations run one after another, in order, each exactly as its own
request would (`create` as POST, `update` as PUT, `complete` as PATCH,
`delete` as DELETE); one failing does not stop the next. The answer is 200
with one result per operation, in order: its status and either `data` or an
`error` in the envelope's error shape. An operation that is malformed fails
alone with status 400; one on a task an owner assigned, which only the owner
may change, with 403.

The creations in a batch are counted against the task quotas together,
before anything runs: a batch with more than the quota left is refused
whole with 429, so a client never has to work out which half went through.

With an `Idempotency-Key` header the first answer is kept (in Redis, for
`TM_IDEMPOTENCY_TTL_S`) and a retry with the same key and body gets it again,
marked `Idempotent-Replayed: true`, without running anything. The key is the
caller's own: another user's same key is another key. The same key with a
different body is 422 IDEMPOTENCY_KEY_REUSED; a retry while the first is
still running is 409 IDEMPOTENCY_KEY_IN_USE. When Redis is down a batch with
a key is refused with 503, since its promise could not be kept; one without
a key runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from tm_domain import caching, storage
from tm_domain.errors import Conflict, InvalidInput, NotAllowed, NotFound, Problem
from tm_service import errors, responses, schemas
from tm_service.quotas import Guard
from tm_service.tasks import TaskService

log = logging.getLogger(__name__)

_OPERATION: TypeAdapter[schemas.BatchOperation] = TypeAdapter(schemas.BatchOperation)
_KINDS = ("create", "update", "complete", "delete")
Parsed = schemas.BatchOperation | list[Problem]


def parse(raw: Any) -> Parsed:
    """One operation, or the problems that make it malformed."""
    try:
        return _OPERATION.validate_python(raw)
    except ValidationError as exc:
        found = []
        for error in exc.errors():
            # The discriminated union puts the operation's kind first in
            # the location; the client named the fields without it.
            loc = tuple(error.get("loc") or ())
            if loc and loc[0] in _KINDS:
                loc = loc[1:]
            found.append({**error, "loc": ("operation", *loc)})
        return errors.problems_from_pydantic(found)


def _kind(raw: Any) -> str | None:
    kind = raw.get("op") if isinstance(raw, dict) else None
    return kind if kind in _KINDS else None


async def run(
    request: Request,
    service: TaskService,
    guard: Guard | None,
    user: storage.User,
    operations: list[Any],
) -> dict[str, Any]:
    """Every operation in order, and the result of each."""
    parsed = [parse(raw) for raw in operations]
    creations = sum(isinstance(p, schemas.BatchCreate) for p in parsed)
    if guard is not None:
        await guard.take_tasks(request.scope, user, creations)

    results = []
    for index, (raw, operation) in enumerate(zip(operations, parsed, strict=True)):
        result = await _one(request, service, user, operation)
        results.append({"index": index, "op": _kind(raw), **result})
    succeeded = sum(1 for r in results if r["status"] < 300)

    return {
        "results": results,
        "succeeded": succeeded,
        "failed": len(results) - succeeded,
    }


async def _one(
    request: Request, service: TaskService, user: storage.User, operation: Parsed
) -> dict[str, Any]:
    def failed(
        status: int, code: str, message: str, details: Any = ()
    ) -> dict[str, Any]:
        body = responses.error_body(
            request, code=code, message=message, details=details
        )
        return {"status": status, "error": body.model_dump(mode="json")}

    def task(found: storage.Task, status: int = 200) -> dict[str, Any]:
        return {
            "status": status,
            "data": schemas.task_public(found).model_dump(mode="json"),
        }

    try:
        if isinstance(operation, list):
            raise InvalidInput(operation)
        if isinstance(operation, schemas.BatchCreate):
            return task(await service.create(user, operation.task.to_draft()), 201)
        if isinstance(operation, schemas.BatchUpdate):
            draft = operation.task.to_draft()
            version = operation.task.version
            return task(
                await service.update(user, operation.id, draft, version=version)
            )
        if isinstance(operation, schemas.BatchComplete):
            completed = True if operation.task is None else operation.task.completed
            return task(
                await service.set_completed(user, operation.id, completed=completed)
            )
        await service.delete(user, operation.id)
        return {"status": 200, "data": {"_id": operation.id, "deleted": True}}

    # Each outcome as its own request would have been answered.
    except InvalidInput as exc:
        details = errors.one_per_field(exc.problems)
        message = (
            f"{details[0][0]} {details[0][1]}"
            if len(details) == 1
            else f"{len(details)} fields are invalid"
        )
        return failed(400, "VALIDATION_ERROR", message, details)
    except NotFound as exc:
        return failed(404, "NOT_FOUND", exc.message)
    except NotAllowed as exc:
        return failed(403, "FORBIDDEN", str(exc))
    except Conflict as exc:
        return failed(409, "CONFLICT", str(exc) or "the task changed since it was read")
    except storage.StoreUnavailable:
        return failed(
            503, "SERVICE_UNAVAILABLE", "the task store is unavailable; try again"
        )


def fingerprint(body: schemas.BatchRequest) -> str:
    """The body's digest, the same however its keys were ordered."""
    # NB: the standard library's encoder, which takes integers of any size
    # (orjson stops at 64 bits, and the operations are not validated yet).
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def once(
    keys: caching.IdempotencyStore,
    *,
    key: str,
    body: schemas.BatchRequest,
    lock_s: int,
    ttl_s: int,
    answer: Callable[[], Awaitable[Response]],
) -> Response:
    """`answer()` the first time `key` comes with this body; after that, the
    answer it gave."""
    digest = fingerprint(body)
    try:
        begun = await keys.begin(key, digest, lock_s=lock_s)
    except storage.StoreUnavailable as exc:
        raise errors.KeysUnavailable(
            "idempotency keys cannot be checked now; retry shortly"
        ) from exc

    if begun.claim is caching.Claim.MISMATCH:
        raise errors.KeyReused(
            "this Idempotency-Key was used with another body; use a new key"
        )
    if begun.claim is caching.Claim.RUNNING:
        raise errors.KeyInUse(
            "a request with this Idempotency-Key is still running; retry shortly"
        )
    if begun.claim is caching.Claim.DONE and begun.answer is not None:
        return Response(
            begun.answer.body,
            status_code=begun.answer.status,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )

    try:
        response = await answer()
    except BaseException:
        # Not answered: release the key so that the retry runs the batch.
        try:
            await keys.abandon(key)
        except storage.StoreUnavailable:
            log.warning("idempotency key not released; it lapses by itself")
        raise

    try:
        await keys.finish(
            key,
            digest,
            caching.Answer(response.status_code, bytes(response.body)),
            ttl_s=ttl_s,
        )
    except storage.StoreUnavailable:
        # The batch ran; a retry after the claim lapses would run it again.
        log.warning("idempotent answer not stored", extra={"lock_s": lock_s})

    return response
