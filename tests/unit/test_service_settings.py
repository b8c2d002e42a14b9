"""Service settings: TM_ variables, and no unsafe secret outside development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tm_service.settings import DEVELOPMENT_JWT_SECRET, ServiceSettings

LONG_SECRET = "a-production-secret-of-more-than-32-chars"


def test_defaults_listen_on_loopback_port_5500_in_development() -> None:
    found = ServiceSettings()

    assert (found.service_host, found.service_port) == ("127.0.0.1", 5500)
    assert found.environment == "development"
    assert found.jwt_secret.get_secret_value() == DEVELOPMENT_JWT_SECRET


def test_values_come_from_tm_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TM_SERVICE_PORT", "6600")
    monkeypatch.setenv("TM_JWT_SECRET", LONG_SECRET)
    monkeypatch.setenv("TM_OUTBOX_RELAY_INTERVAL_MS", "250")

    found = ServiceSettings()

    assert found.service_port == 6600
    assert found.jwt_secret.get_secret_value() == LONG_SECRET
    assert found.outbox_relay_interval_ms == 250


def test_production_refuses_the_development_secret() -> None:
    with pytest.raises(ValidationError, match="development default"):
        ServiceSettings(environment="production")


def test_a_short_secret_is_refused_everywhere() -> None:
    for environment in ("development", "production"):
        with pytest.raises(ValidationError, match="at least 32"):
            ServiceSettings(environment=environment, jwt_secret="short")


def test_production_accepts_a_long_secret_and_hides_it() -> None:
    found = ServiceSettings(environment="production", jwt_secret=LONG_SECRET)

    assert LONG_SECRET not in repr(found)
    assert LONG_SECRET not in str(found.model_dump())


def test_out_of_range_numbers_are_refused() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(service_port=0)
    with pytest.raises(ValidationError):
        ServiceSettings(outbox_relay_interval_ms=1)
