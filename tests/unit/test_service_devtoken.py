"""`scripts/token`: a development token the service itself accepts."""

from __future__ import annotations

import pytest

from tm_service import auth, devtoken
from tm_service.settings import ServiceSettings


def test_a_minted_token_is_accepted_by_the_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = ServiceSettings()

    code = devtoken.main(["user-7", "--tenant", "acme", "--role", "owner"])
    raw = capsys.readouterr().out.strip()

    found = auth.decode(raw, secret=settings.jwt_secret.get_secret_value())
    assert code == 0
    assert (found.user.tenant_id, found.user.user_id, found.role) == (
        "acme",
        "user-7",
        "owner",
    )


def test_no_token_is_minted_outside_development(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TM_ENVIRONMENT", "production")
    monkeypatch.setenv("TM_JWT_SECRET", "a-production-secret-of-more-than-32-chars")

    code = devtoken.main(["user-7"])

    assert code == 2
    assert capsys.readouterr().out == ""
