"""How provider failures are classified and told, without any network."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tm_adapters import providers
from tm_adapters.providers import TwilioSender
from tm_domain.errors import PermanentDelivery, TransientDelivery


@pytest.fixture
def sender() -> Iterator[TwilioSender]:
    built = TwilioSender(
        account_sid="AC" + "0" * 32,
        auth_token="token",
        from_number="+15005550006",
        api_base="http://127.0.0.1:9",
        timeout=1.0,
        concurrency=1,
    )
    yield built
    built.close()


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_throttling_timeouts_and_server_errors_are_worth_retrying(
    sender: TwilioSender, status: int
) -> None:
    error = sender._http_error(status, 20500, "busy", recipient="+14155550100")

    assert isinstance(error, TransientDelivery)
    assert error.detail == f"twilio HTTP {status} code 20500: busy"


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_final(sender: TwilioSender, status: int) -> None:
    error = sender._http_error(status, 21211, "no", recipient="+14155550100")

    assert isinstance(error, PermanentDelivery)


def test_the_detail_names_no_recipient_and_stays_short(sender: TwilioSender) -> None:
    text = "The 'To' number +1 415 555 0100 (+14155550100) is not valid. " * 20

    error = sender._http_error(400, 21211, text, recipient="+14155550100")

    assert "14155550100" not in error.detail
    assert "555" not in error.detail
    assert "<recipient>" in error.detail
    assert len(error.detail) <= 300


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call +14155550100 now", "call <phone> now"),
        ("call 4155550100 now", "call <phone> now"),
        ("call +1 (415) 555-0100 now", "call <phone> now"),
        ("offset +00:00 and 2026-06-01", "offset +00:00 and 2026-06-01"),
        ("mail ada.l@example.co.uk, please", "mail <email>, please"),
        ("at 2026-06-01T12:00:00Z", "at 2026-06-01T12:00:00Z"),
        ("task 6b12e28e9dfdcdfcd6d82ba6", "task 6b12e28e9dfdcdfcd6d82ba6"),
        ("supervisor 1@tm_streams.app.agent", "supervisor 1@tm_streams.app.agent"),
    ],
)
def test_mask_blanks_phone_numbers_and_addresses_only(text: str, masked: str) -> None:
    assert providers.mask(text) == masked
