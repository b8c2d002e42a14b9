"""The cached daily view, answered before the application's stack when it can be.

`GET /api/v1/visitor/time/tasks/daily?date=YYYY-MM-DD` is the hottest
request, and on a cache hit nearly all of its time went to the way through
the stack (error and telemetry middleware, request context, CORS, routing,
dependencies) rather than to its work. The application (`app.TimeService`)
hands such a request to `DailyViews.answer` before anything else, which
answers it itself only when everything is in order:

- the query is exactly `date=` and a date the route accepts, the request
  announces no body, and it carries a bearer token that `auth.Tokens`
  accepts;
- the caller's tenant may call (`Guard.quotas`);
- the view cache is trusted now (`Views.trusts_cache`);
- one `caching.ViewGate` call takes the address's and the caller's limits,
  both allowing, and finds the view cached.

What a caller's requests share is worked out on the first and kept in a
`_Plan`, found by the Authorization header, address and query as sent: the
token and date they carry, the limits they meet, the gate's call prepared
(`ViewGate.prepare`). The token and the tenant are checked on every request
all the same, and a plan is made again when the tenant's quotas change.

Anything else goes on to the stack, whose routes stay the one source of
truth for validation, errors and the OpenAPI document. Limits taken on the
way are handed to them (`Guard.taken`), so a request refused or missed here
counts once.

An answer from here is the one the stack would give, byte for byte but the
timestamp (an integration test holds the two together): the same envelope
(`responses.rendered_envelope`), the request id of
`middleware.request_id_of`, the CORS headers of the same `CORSMiddleware`,
the `RateLimit` headers, the same log line and the same metrics. Nothing of
a view is kept in this process: every answer is read from Redis, so a write
through any replica shows in the next read.
"""

from __future__ import annotations

import contextvars
import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
import structlog
from fastapi.security.utils import get_authorization_scheme_param
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Message, Receive, Scope, Send

from tm_domain import caching, limits, storage, tenants
from tm_service import auth, errors, logs, responses, schemas, views
from tm_service.metrics import Metrics
from tm_service.middleware import REQUEST_LOGGER, request_id_of
from tm_service.middleware import log as request_log
from tm_service.quotas import Guard

log = logging.getLogger(__name__)

DAILY_PATH = "/api/v1/visitor/time/tasks/daily"
_QUERY_PREFIX = b"date="


def _context_var(name: str) -> contextvars.ContextVar[Any]:
    """The variable `structlog.contextvars` binds `name` in, set and reset
    directly: a request binds its id, and binding by name cost more."""
    token = structlog.contextvars.bind_contextvars(**{name: None})[name]
    structlog.contextvars.reset_contextvars(**{name: token})
    return token.var


_REQUEST_ID = _context_var("request_id")
_JSON = b"application/json"


class DailyViews:
    """What answering a cached daily view takes, gathered at start-up."""

    def __init__(
        self,
        *,
        gate: caching.ViewGate,
        guard: Guard,
        tokens: auth.Tokens,
        views: views.Views,
        metrics: Metrics,
        cors: CORSMiddleware | None = None,
    ) -> None:
        """`cors` is the stack's own CORS middleware when CORS is on: its
        headers are added to an answer from here by the same code."""
        self.gate = gate
        self.guard = guard
        self.tokens = tokens
        self.views = views
        self.metrics = metrics
        self.cors = cors
        # The counters' children, found once rather than by label each time.
        self.hits = metrics.cache.labels("daily", "hit")
        self.served = metrics.fast_views.labels("served")
        self.passed = metrics.fast_views.labels("passed")
        self.count, self.duration = metrics.series(
            route=DAILY_PATH, method="GET", status=200
        )
        # The time each answer took, not yet counted (`count_answers`, which
        # the application has run before every scrape).
        self._uncounted: list[float] = []
        # By the Authorization header, client address and query sent.
        self._plans: dict[tuple[bytes, str, bytes], _Plan] = {}

    async def answer(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the request if everything is in order; False leaves it to
        the stack, with its request id, tenant's quotas and the limits taken
        so far in the scope's state."""
        started = time.perf_counter()
        sent = _Sent.of(scope["headers"])
        if sent is None or scope["method"] != "GET" or scope.get("root_path"):
            self.passed.inc()
            return False

        # The request context's id, for any line logged on the way and for
        # the stack if the request goes on to it.
        request_id = request_id_of(sent.request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        bound = _REQUEST_ID.set(request_id)
        try:
            found = await self._found(scope, sent, request_id)
        except Exception:
            # A bug here must not cost the request: the stack answers it,
            # with the limits taken here handed over (`_found`).
            log.exception("the daily view's front failed; the routes answer")
            found = None
        finally:
            _REQUEST_ID.reset(bound)
        if found is None:
            self.passed.inc()
            return False

        await send(found.start)
        await send({"type": "http.response.body", "body": found.body})

        seconds = time.perf_counter() - started
        uncounted = self._uncounted
        uncounted.append(seconds)
        if len(uncounted) >= _COUNTED_TOGETHER:
            self.count_answers()
        _log_request(found, duration_ms=round(seconds * 1000, 2))

        return True

    def count_answers(self) -> None:
        """Add the answers given since the last count to the metrics.

        Answers are counted in batches (of `_COUNTED_TOGETHER`, and before
        every scrape, so a scrape sees them all): three counters and a
        histogram, each behind its lock, were a tenth of an answer's work.
        """
        uncounted, self._uncounted = self._uncounted, []
        if not uncounted:
            return
        self.hits.inc(len(uncounted))
        self.served.inc(len(uncounted))
        self.count.inc(len(uncounted))
        for seconds in uncounted:
            self.duration.observe(seconds)

    async def _found(self, scope: Scope, sent: _Sent, request_id: str) -> _Found | None:
        """The answer when everything is in order; None for the stack to
        answer, with the limits taken so far in the scope's state."""
        if sent.authorization is None or not self.views.trusts_cache():
            return None
        client = scope.get("client")
        key = (sent.authorization, client[0] if client else "", scope["query_string"])
        plan = self._plans.get(key)
        if plan is None:
            day, token = _day(key[2]), sent.token
            if day is None or token is None:
                return None
        else:
            day, token = plan.day, plan.token
        try:
            # Every time: a token expires, a tenant's standing changes.
            user = self.tokens.identity(token).user
            quotas = await self.guard.quotas_of(scope, user.tenant_id)
        except (errors.ServiceError, storage.StoreUnavailable):
            # The routes refuse it in their own words.
            return None

        if plan is None or plan.quotas != quotas:
            plan = self._plan(key, scope, user, quotas, token, day)
        met = plan.met
        try:
            admission = await plan.gated.admit()
        except storage.StoreUnavailable:
            # The routes go on without Redis, as they do.
            return None

        cached = admission.cached
        if cached is None or cached.body is None:
            self._hand_over(scope, met, admission)
            return None
        try:
            # Every stage allowed: only the last one's verdict is needed.
            stamp = responses.now()
            body = responses.rendered_envelope(
                cached.body, request_id=request_id, timestamp=stamp
            )
            start: Message = {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", b"%d" % len(body)),
                    (b"content-type", _JSON),
                ],
            }
            if self.cors is not None:
                # The CORS middleware's headers, set by its own code on the
                # way to a send that keeps the message for later.
                await self.cors.send(
                    start, send=_kept, request_headers=Headers(scope=scope)
                )
            # Then the request context's, added after the CORS ones.
            headers = start["headers"]
            headers.append((b"x-request-id", request_id.encode()))
            headers += self.guard.answered(admission.verdicts)
        except Exception:
            self._hand_over(scope, met, admission)
            raise

        return _Found(
            start,
            body,
            request_id,
            bool(sent.request_id),
            plan.tenant_id,
            plan.tenant_field,
            stamp,
        )

    def _plan(
        self,
        key: tuple[bytes, str, bytes],
        scope: Scope,
        user: storage.User,
        quotas: tenants.Quotas,
        token: str,
        day: str,
    ) -> _Plan:
        met = self.guard.stages(scope, user, quotas)
        gated = self.gate.prepare(
            views.key(user, "daily", day), [[bucket] for _, bucket in met]
        )
        plan = _Plan(
            token=token,
            day=day,
            quotas=quotas,
            met=met,
            gated=gated,
            tenant_id=user.tenant_id,
            tenant_field=_tenant_field(user.tenant_id),
        )
        if key not in self._plans and len(self._plans) >= _PLANS_KEPT:
            # The oldest goes: insertion order is a dict's order.
            del self._plans[next(iter(self._plans))]
        self._plans[key] = plan

        return plan

    def _hand_over(
        self,
        scope: Scope,
        met: list[tuple[str, limits.Bucket]],
        admission: caching.Admission,
    ) -> None:
        """The limits taken here, for the stack's steps to use."""
        names = (name for name, _ in met)
        self.guard.taken(scope, dict(zip(names, admission.verdicts, strict=False)))


async def _kept(message: Message) -> None:
    """A send that sends nothing: the message is sent later, as it is."""


# Answers counted in the metrics together (`DailyViews.count_answers`).
_COUNTED_TOGETHER = 64

# Plans kept, one a caller, address and query; past this many, the oldest goes.
_PLANS_KEPT = 4096


@dataclass(frozen=True, slots=True)
class _Plan:
    """What the requests of one caller from one address for one day share,
    worked out on the first of them: the token and day they carry, the
    limits they meet (which follow from the tenant's quotas) and the gate's
    call, prepared."""

    token: str
    day: str
    quotas: tenants.Quotas
    met: list[tuple[str, limits.Bucket]]
    gated: caching.Gated
    tenant_id: str
    tenant_field: str
    """`_tenant_field`, worked out once."""


@dataclass(slots=True)
class _Found:
    """An answer from the front, and what its log line says."""

    start: Message
    body: bytes
    request_id: str
    request_id_sent: bool
    """Whether the client chose the id (else it is one made here)."""
    tenant_id: str
    tenant_field: str
    stamp: datetime


# The request context's line for this route, as `logs.configure`'s chain
# renders it (a unit test holds the two together): fields in the order the
# chain puts them, the ones a client can choose masked and quoted alike.
_LINE = (
    '{"method":"GET","route":"' + DAILY_PATH + '","status":200,"duration_ms":%s,'
    '"tenant":%s,"event":"request","request_id":%s,"level":"info",'
    '"logger":"' + REQUEST_LOGGER + '","timestamp":%s}\n'
)


def _tenant_field(tenant_id: str) -> str:
    """The tenant as the log line's JSON has it, masked."""
    return orjson.dumps(logs.mask(tenant_id)).decode()


def _log_request(found: _Found, *, duration_ms: float) -> None:
    """The request context's log line for an answer from the front."""
    if not logs.writes_json_info():
        with structlog.contextvars.bound_contextvars(request_id=found.request_id):
            request_log.info(
                "request",
                method="GET",
                route=DAILY_PATH,
                status=200,
                duration_ms=duration_ms,
                tenant=found.tenant_id,
            )
        return
    # A request id keeps only characters JSON writes as they are
    # (`request_id_of`), so quotes are all it needs; one made here (hex
    # digits) has nothing to mask.
    request_id = found.request_id
    if found.request_id_sent:
        request_id = logs.mask(request_id)
    logs.write_soon(
        _LINE
        % (
            repr(duration_ms),
            found.tenant_field,
            f'"{request_id}"',
            orjson.dumps(found.stamp, option=orjson.OPT_UTC_Z).decode(),
        )
    )


class _Sent:
    """The request headers the front reads, from one pass over them."""

    __slots__ = ("authorization", "request_id")

    def __init__(self, authorization: bytes | None, request_id: str) -> None:
        self.authorization = authorization
        self.request_id = request_id

    @property
    def token(self) -> str | None:
        """The bearer token of the Authorization header, if it is one."""
        return _bearer_of(self.authorization)

    @classmethod
    def of(cls, raw: list[tuple[bytes, bytes]]) -> _Sent | None:
        """The bearer token and request id sent; None when the request
        announces a body, which the stack reads or refuses."""
        authorization: bytes | None = None
        request_id = b""
        seen_id = False
        for name, value in raw:
            if name == b"authorization":
                if authorization is None:
                    authorization = value
            elif name == b"x-request-id":
                if not seen_id:
                    request_id, seen_id = value, True
            elif name == b"content-length":
                if value != b"0":
                    return None
            elif name == b"transfer-encoding":
                return None

        return cls(authorization, request_id.decode("latin-1"))


def _bearer_of(value: bytes | None) -> str | None:
    """The bearer token as FastAPI's `HTTPBearer` reads it, or None."""
    if value is None:
        return None
    scheme, credentials = get_authorization_scheme_param(value.decode("latin-1"))
    if scheme.lower() != "bearer" or not credentials:
        return None

    return credentials


def _day(query: bytes) -> str | None:
    """The date of a query that is exactly `date=YYYY-MM-DD`, as the route
    would accept it; None for any other query."""
    if not query.startswith(_QUERY_PREFIX) or len(query) != len(_QUERY_PREFIX) + 10:
        return None
    text = query[len(_QUERY_PREFIX) :].decode("ascii", errors="replace")
    try:
        return date.fromisoformat(schemas.calendar_date(text)).isoformat()
    except ValueError:
        return None
