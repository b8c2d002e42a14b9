"""Who is calling: the user and tenant named by the request's bearer token.

Tokens are JWTs signed with HS256 and `TM_JWT_SECRET`; `sub` names the user,
`tenant` the tenant, `role` is visitor, owner or admin, and `exp` is
required. Any other algorithm, `none` included, is refused. Every task read
and write is scoped to the (tenant, user) found here.

Administrators' routes (`/api/v1/admin/`) act on one tenant: the tenant of a
token whose role is admin, or the tenant a `TenantKeys` finds for the
`X-API-Key` header: by default the tenant registry the operator writes, which
keeps each key's SHA-256 (`tm_service.quotas.DirectoryKeys`).

A token once verified is kept, by its text, in a bounded in-process cache
(`Tokens`), so its signature is checked once rather than on every request;
its expiry is still checked on every request.

Once the caller is known, `tm_service.quotas.Guard` admits it: its tenant
must be active, and its calls within the limits.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tm_domain import storage
from tm_domain.privacy import Actor
from tm_service.errors import Forbidden, Unauthorized
from tm_service.schemas import ID_PATTERN

ALGORITHM = "HS256"
ROLES = frozenset({"visitor", "owner", "admin"})

# Ids become part of every query and of log lines: printable, no spaces.
_ID = re.compile(ID_PATTERN)


@dataclass(frozen=True)
class Identity:
    user: storage.User
    role: str


def decode(token: str, *, secret: str, leeway_s: int = 0) -> Identity:
    """The identity a token proves; raises Unauthorized with the reason."""
    return _verify(token, secret=secret, leeway_s=leeway_s)[0]


def _verify(token: str, *, secret: str, leeway_s: int) -> tuple[Identity, int]:
    """The identity a token proves and its `exp`, as PyJWT reads it."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=leeway_s,
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired", token_sent=True) from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(
            f"invalid token: {type(exc).__name__}", token_sent=True
        ) from None

    user_id = _claimed_id(claims, "sub")
    tenant_id = _claimed_id(claims, "tenant")
    role = claims.get("role")
    if role not in ROLES:
        raise Unauthorized("claim role missing or unknown", token_sent=True)

    user = storage.User(tenant_id=tenant_id, user_id=user_id)

    return Identity(user, str(role)), int(claims["exp"])


class Tokens:
    """Tokens verified before, by their text, with the identity they prove.

    A token is verified in full (signature, claims) the first time it is
    seen; after that its identity comes from here for as long as it is valid.
    Only `exp` can end that validity (`nbf` and `iat` have passed once the
    token was accepted), so it is checked on every request, with the leeway
    PyJWT allows. The key is the whole token, signature included: a token
    changed in any character is a new one, verified in full. At most `size`
    tokens are kept, the least recently used going first.
    """

    def __init__(
        self,
        *,
        secret: str,
        leeway_s: int,
        size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.secret = secret
        self.leeway_s = leeway_s
        self.size = size
        self.clock = clock
        self._verified: OrderedDict[str, tuple[int, Identity]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._verified)

    def __contains__(self, token: object) -> bool:
        return token in self._verified

    def identity(self, token: str) -> Identity:
        """The identity `token` proves; raises Unauthorized with the reason."""
        kept = self._verified.get(token)
        if kept is not None:
            expires, found = kept
            # PyJWT's rule: expired once `exp` is at or before now - leeway.
            if expires > self.clock() - self.leeway_s:
                self._verified.move_to_end(token)
                return found
            del self._verified[token]
            raise Unauthorized("token expired", token_sent=True)

        found, expires = _verify(token, secret=self.secret, leeway_s=self.leeway_s)
        self._verified[token] = (expires, found)
        if len(self._verified) > self.size:
            self._verified.popitem(last=False)

        return found


def _claimed_id(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not _ID.match(value):
        raise Unauthorized(f"claim {name} missing or malformed", token_sent=True)

    return value


_bearer = HTTPBearer(auto_error=False, description="A JWT signed with HS256.")


async def identity(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Identity:
    """The caller of this request; 401 without a valid token."""
    if credentials is None:
        raise Unauthorized("no bearer token", token_sent=False)
    tokens: Tokens = request.app.state.tokens
    found = tokens.identity(credentials.credentials)
    # For the request log line, written by the middleware.
    request.scope.setdefault("state", {})["tenant"] = found.user.tenant_id
    await _admit(request, found.user)

    return found


async def _admit(request: Request, user: storage.User) -> None:
    guard = getattr(request.app.state, "guard", None)
    if guard is not None:
        await guard.admit(request.scope, user)


async def current_user(caller: Annotated[Identity, Depends(identity)]) -> storage.User:
    return caller.user


CurrentUser = Annotated[storage.User, Depends(current_user)]


async def owner_user(caller: Annotated[Identity, Depends(identity)]) -> storage.User:
    """The team owner calling; 403 for any other role."""
    if caller.role != "owner":
        raise Forbidden("this route is for team owners")
    return caller.user


OwnerUser = Annotated[storage.User, Depends(owner_user)]


API_KEY_HEADER = "X-API-Key"


class TenantKeys(Protocol):
    """Where tenant API keys are checked (keys issued by the operator)."""

    async def tenant_of(self, key: str) -> str | None:
        """The tenant the key belongs to, or None when it is not a valid key."""
        ...


@dataclass(frozen=True)
class AdminCaller:
    """An administrator's request: the one tenant it may act on, and who asks."""

    tenant_id: str
    actor: Actor


async def admin_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AdminCaller:
    """The administrator calling; 401 without credentials, 403 for a non-admin."""
    key = request.headers.get(API_KEY_HEADER)
    if key is not None:
        keys: TenantKeys | None = getattr(request.app.state, "tenant_keys", None)
        tenant_id = None if keys is None else await keys.tenant_of(key)
        if tenant_id is None:
            raise Unauthorized("API key not accepted", token_sent=True)
        request.scope.setdefault("state", {})["tenant"] = tenant_id
        await _admit(request, storage.User(tenant_id, "api-key"))
        return AdminCaller(tenant_id, Actor(id="api-key", role="admin", via="apiKey"))

    caller = await identity(request, credentials)
    if caller.role != "admin":
        raise Forbidden("this route is for administrators of the tenant")

    return AdminCaller(
        caller.user.tenant_id,
        Actor(id=caller.user.user_id, role=caller.role, via="token"),
    )


CurrentIdentity = Annotated[Identity, Depends(identity)]
Admin = Annotated[AdminCaller, Depends(admin_caller)]
