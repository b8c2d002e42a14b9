"""The worker's settings: defaults, environment names and what they refuse."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from pydantic import ValidationError

from tm_streams.settings import StreamsSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TM_"):
            monkeypatch.delenv(name)


def test_defaults_aim_at_the_real_providers_and_loopback_only() -> None:
    settings = StreamsSettings()

    assert settings.twilio_api_base == "https://api.twilio.com"
    assert settings.sendgrid_api_host == "https://api.sendgrid.com"
    assert settings.streams_web_host == "127.0.0.1"
    assert settings.streams_web_port == 6066
    assert settings.streams_app_id == "tm-streams"
    assert settings.delivery_max_attempts == 5
    assert settings.delivery_backoff_base_ms == 1000
    assert settings.delivery_max_lateness_min == 360
    assert settings.sweep_interval_ms == 15_000
    assert settings.schedule_horizon_s == 600
    assert settings.twilio_auth_token is None and settings.sendgrid_api_key is None


def test_the_worker_id_defaults_to_host_and_process() -> None:
    assert StreamsSettings().worker_id.endswith(f"-{os.getpid()}")


def test_every_setting_is_read_from_its_tm_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TM_TWILIO_AUTH_TOKEN", "token-1")
    monkeypatch.setenv("TM_SENDGRID_API_KEY", "SG.key")
    monkeypatch.setenv("TM_DELIVERY_BACKOFF_BASE_MS", "250")
    monkeypatch.setenv("TM_DELIVERY_CONCURRENCY", "7")
    monkeypatch.setenv("TM_STREAMS_WEB_PORT", "7070")
    monkeypatch.setenv("TM_WORKER_ID", "worker-7")

    settings = StreamsSettings()

    assert settings.twilio_auth_token is not None
    assert settings.twilio_auth_token.get_secret_value() == "token-1"
    assert "token-1" not in repr(settings)
    assert "SG.key" not in repr(settings)
    assert settings.delivery_backoff_base_ms == 250
    assert settings.delivery_concurrency == 7
    assert settings.streams_web_port == 7070
    assert settings.worker_id == "worker-7"


def test_the_engine_settings_carry_the_units_over() -> None:
    settings = StreamsSettings(
        delivery_max_attempts=3,
        delivery_backoff_base_ms=200,
        delivery_backoff_cap_ms=5000,
        delivery_max_lateness_min=30,
        delivery_send_timeout_ms=4000,
        delivery_concurrency=9,
        sweep_interval_ms=2500,
        schedule_horizon_s=120,
    )

    engine = settings.engine()

    assert engine.retry.max_attempts == 3
    assert engine.retry.base == timedelta(milliseconds=200)
    assert engine.retry.cap == timedelta(seconds=5)
    assert engine.lateness.max_lateness == timedelta(minutes=30)
    assert engine.send_timeout == timedelta(seconds=5)
    assert engine.lease >= 3 * engine.send_timeout
    assert engine.sweep_every == timedelta(milliseconds=2500)
    assert engine.horizon == timedelta(minutes=2)
    assert engine.concurrency == 9


def test_a_backoff_cap_below_its_base_is_refused() -> None:
    with pytest.raises(ValidationError, match="BACKOFF_CAP"):
        StreamsSettings(delivery_backoff_base_ms=5000, delivery_backoff_cap_ms=1000)


def test_production_refuses_a_provider_reached_without_tls() -> None:
    with pytest.raises(ValidationError, match="TM_TWILIO_API_BASE must be https"):
        StreamsSettings(environment="production", twilio_api_base="http://127.0.0.1:1")


def test_development_may_point_the_providers_at_local_fakes() -> None:
    settings = StreamsSettings(
        twilio_api_base="http://127.0.0.1:8999",
        sendgrid_api_host="http://127.0.0.1:8999",
    )

    assert settings.twilio_api_base.startswith("http://127.0.0.1")
