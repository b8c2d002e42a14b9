"""The Twilio and SendGrid senders, through the official SDKs, against the fakes."""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest

from tests.support.documents import EMAIL, PHONE
from tests.support.fake_providers import (
    SENDGRID_API_KEY,
    TWILIO_ACCOUNT_SID,
    TWILIO_AUTH_TOKEN,
    FakeProviders,
)
from tests.support.fixtures import SENDGRID_FROM, TWILIO_FROM, streams_settings_for
from tm_adapters import providers
from tm_adapters.providers import SendGridSender, TwilioSender
from tm_domain.delivery import Message
from tm_domain.errors import PermanentDelivery, TransientDelivery

pytestmark = pytest.mark.integration


def sms(to: str = PHONE) -> Message:
    return Message(
        "sms", to, "Reminder: Call Bob", "Reminder: Call Bob, 2026-06-01", "t", "1"
    )


def email(to: str = EMAIL) -> Message:
    return Message("email", to, "Reminder: Call Bob", "Call Bob\n2026-06-01", "t", "1")


def twilio(
    url: str, *, token: str = TWILIO_AUTH_TOKEN, timeout: float = 2.0, threads: int = 4
) -> TwilioSender:
    return TwilioSender(
        account_sid=TWILIO_ACCOUNT_SID,
        auth_token=token,
        from_number=TWILIO_FROM,
        api_base=url,
        timeout=timeout,
        concurrency=threads,
    )


def sendgrid(
    url: str, *, key: str = SENDGRID_API_KEY, timeout: float = 2.0, threads: int = 4
) -> SendGridSender:
    return SendGridSender(
        api_key=key,
        from_email=SENDGRID_FROM,
        api_host=url,
        timeout=timeout,
        concurrency=threads,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_twilio_sends_the_sms_and_returns_the_message_sid(
    fake_providers: FakeProviders,
) -> None:
    sender = twilio(fake_providers.url)

    sid = await sender.send(sms())

    assert re.fullmatch(r"SM[0-9a-f]{32}", sid)
    [received] = fake_providers.messages()
    assert received["status"] == 201
    assert received["id"] == sid
    assert (received["to"], received["from"]) == (PHONE, TWILIO_FROM)
    assert received["body"] == "Reminder: Call Bob, 2026-06-01"
    sender.close()


async def test_sendgrid_sends_the_mail_and_returns_the_message_id(
    fake_providers: FakeProviders,
) -> None:
    sender = sendgrid(fake_providers.url)

    message_id = await sender.send(email())

    [received] = fake_providers.messages()
    assert received["status"] == 202
    assert message_id and received["id"] == message_id
    assert (received["to"], received["from"]) == (EMAIL, SENDGRID_FROM)
    assert received["subject"] == "Reminder: Call Bob"
    assert received["body"] == "Call Bob\n2026-06-01"
    sender.close()


@pytest.mark.parametrize("status", [429, 500, 503])
@pytest.mark.parametrize("channel", ["sms", "email"])
async def test_throttling_and_server_errors_are_transient(
    fake_providers: FakeProviders, status: int, channel: str
) -> None:
    sender = (
        twilio(fake_providers.url) if channel == "sms" else sendgrid(fake_providers.url)
    )
    fake_providers.script(status=status)

    with pytest.raises(TransientDelivery) as caught:
        await sender.send(sms() if channel == "sms" else email())

    assert f"HTTP {status}" in caught.value.detail
    sender.close()


async def test_an_invalid_number_is_permanent_and_its_detail_hides_the_number(
    fake_providers: FakeProviders,
) -> None:
    sender = twilio(fake_providers.url)

    with pytest.raises(PermanentDelivery) as caught:
        await sender.send(sms(to="+1234"))

    assert "HTTP 400" in caught.value.detail
    assert "code 21211" in caught.value.detail
    assert "+1234" not in caught.value.detail
    sender.close()


async def test_an_invalid_address_is_permanent_and_its_detail_hides_it(
    fake_providers: FakeProviders,
) -> None:
    sender = sendgrid(fake_providers.url)

    with pytest.raises(PermanentDelivery) as caught:
        await sender.send(email(to="not-an-address"))

    assert "HTTP 400" in caught.value.detail
    assert "valid address" in caught.value.detail
    assert "not-an-address" not in caught.value.detail
    sender.close()


async def test_bad_credentials_are_permanent_and_never_shown(
    fake_providers: FakeProviders,
) -> None:
    bad_twilio = twilio(fake_providers.url, token="wrong-token-123")
    bad_sendgrid = sendgrid(fake_providers.url, key="SG.wrong-key-456")

    with pytest.raises(PermanentDelivery) as sms_error:
        await bad_twilio.send(sms())
    with pytest.raises(PermanentDelivery) as email_error:
        await bad_sendgrid.send(email())

    assert "HTTP 401" in sms_error.value.detail
    assert "code 20003" in sms_error.value.detail
    assert "wrong-token-123" not in sms_error.value.detail
    assert "HTTP 401" in email_error.value.detail
    assert "wrong-key-456" not in email_error.value.detail
    bad_twilio.close()
    bad_sendgrid.close()


@pytest.mark.parametrize("channel", ["sms", "email"])
async def test_a_provider_slower_than_the_timeout_is_transient(
    fake_providers: FakeProviders, channel: str
) -> None:
    sender = (
        twilio(fake_providers.url, timeout=0.3)
        if channel == "sms"
        else sendgrid(fake_providers.url, timeout=0.3)
    )
    fake_providers.script(delay_ms=1500)
    started = time.monotonic()

    with pytest.raises(TransientDelivery) as caught:
        await sender.send(sms() if channel == "sms" else email())

    assert "timed out" in caught.value.detail
    assert time.monotonic() - started < 1.2
    sender.close()


@pytest.mark.parametrize("channel", ["sms", "email"])
async def test_a_provider_that_refuses_connections_is_transient(channel: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    sender = twilio(url) if channel == "sms" else sendgrid(url)

    with pytest.raises(TransientDelivery):
        await sender.send(sms() if channel == "sms" else email())

    sender.close()


async def test_sends_run_side_by_side_on_the_senders_own_threads(
    fake_providers: FakeProviders,
) -> None:
    sender = twilio(fake_providers.url, threads=10)
    fake_providers.script(delay_ms=300, count=10)
    started = time.monotonic()

    sids = await asyncio.gather(*(sender.send(sms()) for _ in range(10)))

    # Ten calls of 0.3 s each, one after another, would take 3 s.
    assert time.monotonic() - started < 1.5
    assert len(set(sids)) == 10
    assert len(fake_providers.messages(accepted_only=True)) == 10
    sender.close()


def test_only_the_channels_with_credentials_get_a_sender() -> None:
    url = "http://127.0.0.1:9"
    everything = streams_settings_for(database="unused", providers_url=url)
    sms_only = streams_settings_for(
        database="unused", providers_url=url, sendgrid_api_key=None
    )
    email_only = streams_settings_for(
        database="unused", providers_url=url, twilio_from_number=None
    )

    senders = [
        providers.senders_from_settings(s) for s in (everything, sms_only, email_only)
    ]

    assert [sorted(s) for s in senders] == [["email", "sms"], ["sms"], ["email"]]
    for built in senders:
        providers.close_senders(built)
