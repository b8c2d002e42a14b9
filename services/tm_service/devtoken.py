"""Mint a bearer token for trying the API: `python -m tm_service.devtoken USER`.

The token is signed with the service's own TM_JWT_SECRET, so it works against
a service started with the same environment. Refused outside development:
production tokens come from the platform's identity provider.
"""

from __future__ import annotations

import argparse
import sys
import time

import jwt

from tm_service.settings import ServiceSettings

ROLES = ("visitor", "owner", "admin")


def mint(
    settings: ServiceSettings,
    user: str,
    *,
    tenant: str = "default",
    role: str = "visitor",
    hours: float = 12.0,
) -> str:
    claims = {
        "sub": user,
        "tenant": tenant,
        "role": role,
        "exp": int(time.time() + hours * 3600),
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("user", help="the token's subject, a user id")
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--role", choices=ROLES, default="visitor")
    parser.add_argument("--hours", type=float, default=12.0, help="lifetime")
    args = parser.parse_args(argv)

    settings = ServiceSettings()
    if settings.environment != "development":
        print("devtoken: refused outside TM_ENVIRONMENT=development", file=sys.stderr)
        return 2
    print(
        mint(settings, args.user, tenant=args.tenant, role=args.role, hours=args.hours)
    )

    return 0


if __name__ == "__main__":
    sys.exit(main())
