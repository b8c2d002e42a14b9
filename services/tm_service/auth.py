"""Who is calling: the user and tenant named by the request's bearer token.

Tokens are JWTs signed with HS256 and `TM_JWT_SECRET`; `sub` names the user,
`tenant` the tenant, `role` is visitor, owner or admin, and `exp` is
required. Any other algorithm, `none` included, is refused. Every task read
and write is scoped to the (tenant, user) found here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tm_domain import storage
from tm_service.errors import Unauthorized

ALGORITHM = "HS256"
ROLES = frozenset({"visitor", "owner", "admin"})

# Ids become part of every query and of log lines: printable, no spaces.
_ID = re.compile(r"^[A-Za-z0-9._:@|-]{1,128}$")


@dataclass(frozen=True)
class Identity:
    user: storage.User
    role: str


def decode(token: str, *, secret: str, leeway_s: int = 0) -> Identity:
    """The identity a token proves; raises Unauthorized with the reason."""
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

    return Identity(storage.User(tenant_id=tenant_id, user_id=user_id), str(role))


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
    settings = request.app.state.settings
    found = decode(
        credentials.credentials,
        secret=settings.jwt_secret.get_secret_value(),
        leeway_s=settings.jwt_leeway_s,
    )
    # For the request log line, written by the middleware.
    request.scope.setdefault("state", {})["tenant"] = found.user.tenant_id

    return found


async def current_user(caller: Annotated[Identity, Depends(identity)]) -> storage.User:
    return caller.user


CurrentUser = Annotated[storage.User, Depends(current_user)]
