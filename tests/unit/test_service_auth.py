"""Bearer tokens: only a valid HS256 token of ours names a user and a tenant."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest
from test_service_fakes import SECRET, body, serve, token

from tm_domain import storage
from tm_service import auth
from tm_service.errors import Unauthorized

TASKS = "/api/v1/visitor/time/tasks"


def _unsigned(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


def test_a_valid_token_names_user_tenant_and_role() -> None:
    found = auth.decode(token(role="owner"), secret=SECRET)

    assert found.user == storage.User(tenant_id="tenant-1", user_id="user-a")
    assert found.role == "owner"


REFUSED = {
    "expired": token(expires_in=-60),
    "forged": token(secret="another-secret-that-is-long-enough-too-1234"),
    "alg none": _unsigned({"sub": "u", "tenant": "t", "role": "visitor", "exp": 2**40}),
    "HS512": token(algorithm="HS512", secret=SECRET * 2),
    "no sub": token(sub=None),
    "no tenant": token(tenant=None),
    "no role": token(role=None),
    "unknown role": token(role="root"),
    "sub not text": jwt.encode(
        {"sub": 5, "tenant": "t", "role": "visitor", "exp": 2**40},
        SECRET,
        algorithm="HS256",
    ),
    "tenant with spaces": token(tenant="a tenant"),
    "no exp": jwt.encode(
        {"sub": "u", "tenant": "t", "role": "visitor"}, SECRET, algorithm="HS256"
    ),
    "garbage": "not.a.token",
    "empty segments": "..",
}


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
def test_a_bad_token_is_refused(raw: str) -> None:
    with pytest.raises(Unauthorized):
        auth.decode(raw, secret=SECRET)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
        *({"Authorization": f"Bearer {raw}"} for raw in REFUSED.values()),
    ],
)
async def test_every_task_route_answers_401_with_a_bearer_challenge(
    headers: dict[str, str],
) -> None:
    async with serve() as http:
        answers = [
            await http.post(TASKS, json=body(), headers=headers),
            await http.get(f"{TASKS}/daily?date=2030-01-15", headers=headers),
            await http.get(f"{TASKS}/{'a' * 24}", headers=headers),
            await http.delete(f"{TASKS}/{'a' * 24}", headers=headers),
        ]

    for answer in answers:
        assert answer.status_code == 401
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert answer.json()["success"] is False
        assert answer.json()["error"]["code"] == "UNAUTHORIZED"


async def test_a_refused_token_is_not_validated_further() -> None:
    async with serve() as http:
        answer = await http.post(TASKS, json={"title": 5}, headers={})

    assert answer.status_code == 401


class Clock:
    """Seconds since the epoch, moved only by the test."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_token_kept_verified_is_refused_once_its_exp_passes() -> None:
    clock = Clock()
    tokens = auth.Tokens(secret=SECRET, leeway_s=10, clock=clock)
    raw = token(expires_in=60)
    expires = jwt.decode(raw, options={"verify_signature": False})["exp"]
    first = tokens.identity(raw)

    clock.now = expires + 10 - 0.5
    within_leeway = tokens.identity(raw)
    clock.now = expires + 10
    with pytest.raises(Unauthorized) as refused:
        tokens.identity(raw)

    assert first == within_leeway
    assert first.user == storage.User(tenant_id="tenant-1", user_id="user-a")
    assert refused.value.reason == "token expired"
    assert raw not in tokens


def test_a_kept_token_changed_in_one_character_is_verified_again() -> None:
    tokens = auth.Tokens(secret=SECRET, leeway_s=0)
    raw = token()
    tokens.identity(raw)
    head, _, signature = raw.rpartition(".")
    forged = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"

    with pytest.raises(Unauthorized):
        tokens.identity(forged)

    assert raw in tokens
    assert forged not in tokens


def test_the_kept_tokens_are_bounded_the_least_recently_used_going_first() -> None:
    tokens = auth.Tokens(secret=SECRET, leeway_s=0, size=2)
    first, second, third = (token(sub=f"user-{n}") for n in "abc")
    tokens.identity(first)
    tokens.identity(second)

    tokens.identity(first)
    tokens.identity(third)

    assert len(tokens) == 2
    assert first in tokens
    assert second not in tokens
    assert third in tokens
