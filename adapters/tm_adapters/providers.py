"""The delivery providers: Twilio for SMS, SendGrid for e-mail.

Each sender implements `tm_domain.delivery.Sender` with the provider's official
SDK. The SDKs block, so every call runs on a thread pool of the sender's own,
sized for the engine's concurrency, and has a request timeout. Failures are
translated here, once, into the two errors the engine reacts to:

- `TransientDelivery`: HTTP 408, 429 and 5xx, timeouts and connection errors
  (a later try may succeed);
- `PermanentDelivery`: any other 4xx (the provider refused this message).

An error's detail names the status and the provider's code and message, with
any phone number or e-mail address masked; it never holds a token or key.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import python_http_client.exceptions
import requests
from pydantic import SecretStr
from requests.adapters import HTTPAdapter
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import Mail, To
from sendgrid.helpers.mail.exceptions import SendGridException
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient

from tm_domain.delivery import Message, Sender
from tm_domain.errors import DeliveryError, PermanentDelivery, TransientDelivery
from tm_domain.reminders import Channel

T = TypeVar("T")

# A number written with a plus (spaces, dots, dashes and brackets allowed), or a
# bare run of 7 to 15 digits: E.164 and what people type, never a date.
_PHONE = re.compile(r"\+\d(?:[ .()-]{0,2}\d){6,14}(?!\d)|(?<![\w+])\d{7,15}(?!\w)")
# An address whose domain ends in a dotted name: never a `name@module.path`.
_EMAIL = re.compile(
    r"[^\s@'\"<>,;:]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![\w-])"
)
_DETAIL_MAX = 300


class ProviderSettings(Protocol):
    """The settings a deployable gives to build its senders."""

    twilio_account_sid: str | None
    twilio_auth_token: SecretStr | None
    twilio_from_number: str | None
    twilio_api_base: str
    sendgrid_api_key: SecretStr | None
    sendgrid_from_email: str | None
    sendgrid_api_host: str
    delivery_send_timeout_ms: int
    delivery_concurrency: int


def senders_from_settings(settings: ProviderSettings) -> dict[str, Sender]:
    """A sender for each channel whose credentials are configured."""
    timeout = settings.delivery_send_timeout_ms / 1000
    senders: dict[str, Sender] = {}

    if (
        settings.twilio_account_sid
        and settings.twilio_auth_token
        and settings.twilio_from_number
    ):
        senders[Channel.SMS] = TwilioSender(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            from_number=settings.twilio_from_number,
            api_base=settings.twilio_api_base,
            timeout=timeout,
            concurrency=settings.delivery_concurrency,
        )
    if settings.sendgrid_api_key and settings.sendgrid_from_email:
        senders[Channel.EMAIL] = SendGridSender(
            api_key=settings.sendgrid_api_key.get_secret_value(),
            from_email=settings.sendgrid_from_email,
            api_host=settings.sendgrid_api_host,
            timeout=timeout,
            concurrency=settings.delivery_concurrency,
        )

    return senders


def close_senders(senders: dict[str, Sender]) -> None:
    """Release the threads and connections of the senders built here."""
    for sender in senders.values():
        if isinstance(sender, TwilioSender | SendGridSender):
            sender.close()


def mask(text: str) -> str:
    """`text` with every phone number and e-mail address blanked out."""
    text = _EMAIL.sub("<email>", text)

    return _PHONE.sub("<phone>", text)


class _BlockingSender:
    """Runs a blocking SDK call on a pool of its own, off the event loop."""

    provider = "provider"

    def __init__(self, *, concurrency: int) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=concurrency, thread_name_prefix=f"{self.provider}-send"
        )

    async def _run(self, call: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, call)

    def close(self) -> None:
        # NB: calls still under way finish on their threads; none is abandoned.
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _http_error(
        self, status: int, code: object, text: str, *, recipient: str
    ) -> DeliveryError:
        detail = f"{self.provider} HTTP {status}"
        if code is not None:
            detail += f" code {code}"
        if recipient:
            text = text.replace(recipient, "<recipient>")
        if text:
            detail += f": {mask(text)}"
        detail = detail[:_DETAIL_MAX]

        # Retry: the provider is throttling, overloaded, down or slow.
        if status in (408, 429) or status >= 500:
            return TransientDelivery(detail)
        # Give up: the provider refused this message and will again.
        return PermanentDelivery(detail)


class TwilioSender(_BlockingSender):
    """SMS through Twilio's Messages API."""

    provider = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        api_base: str,
        timeout: float,
        concurrency: int,
    ) -> None:
        super().__init__(concurrency=concurrency)
        self._from = from_number

        # One pooled session, with a connection per thread that may use it.
        http = TwilioHttpClient(timeout=timeout)
        assert http.session is not None
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=concurrency)
        http.session.mount("https://", adapter)
        http.session.mount("http://", adapter)
        self._http = http

        self._client = TwilioClient(account_sid, auth_token, http_client=http)
        # NB: an edge or region (also read from TWILIO_EDGE and TWILIO_REGION)
        # rewrites the host of every URL; the API base alone must decide it.
        self._client.edge = None
        self._client.region = None
        self._client.api.base_url = api_base.rstrip("/")

    async def send(self, message: Message) -> str:
        return await self._run(lambda: self._send_blocking(message))

    def _send_blocking(self, message: Message) -> str:
        try:
            created = self._client.messages.create(
                to=message.to, from_=self._from, body=message.body
            )
        except TwilioServiceException as exc:
            raise self._http_error(
                exc.status, exc.code, exc.detail or exc.title, recipient=message.to
            ) from None
        except TwilioRestException as exc:
            raise self._http_error(
                exc.status, exc.code, exc.msg, recipient=message.to
            ) from None
        except requests.Timeout:
            # Retry: no answer in time; the message may or may not have gone.
            raise TransientDelivery("twilio timed out") from None
        except requests.RequestException as exc:
            # Retry: the connection failed or broke.
            raise TransientDelivery(f"twilio {type(exc).__name__}") from None

        return str(created.sid)

    def close(self) -> None:
        super().close()
        if self._http.session is not None:
            self._http.session.close()


class SendGridSender(_BlockingSender):
    """E-mail through SendGrid's v3 mail send API."""

    provider = "sendgrid"

    def __init__(
        self,
        *,
        api_key: str,
        from_email: str,
        api_host: str,
        timeout: float,
        concurrency: int,
    ) -> None:
        super().__init__(concurrency=concurrency)
        self._from = from_email
        self._client = SendGridAPIClient(api_key=api_key, host=api_host.rstrip("/"))
        # The HTTP client reads its timeout at each request.
        self._client.client.timeout = timeout

    async def send(self, message: Message) -> str:
        return await self._run(lambda: self._send_blocking(message))

    def _send_blocking(self, message: Message) -> str:
        # NB: the address is set as is; the SDK would read "Name <address>"
        # out of a plain string, and take one without "@" for a name.
        recipient = To()
        recipient.email = message.to
        try:
            mail = Mail(
                from_email=self._from,
                to_emails=recipient,
                subject=message.subject,
                plain_text_content=message.body,
            )
            response = self._client.send(mail)
        except SendGridException as exc:
            # Give up: the SDK refuses this text (one that looks like an API key).
            raise PermanentDelivery(f"sendgrid refused: {type(exc).__name__}") from None
        except python_http_client.exceptions.HTTPError as exc:
            raise self._http_error(
                exc.status_code,
                None,
                _sendgrid_errors(exc.body),
                recipient=message.to,
            ) from None
        except TimeoutError:
            # Retry: no answer in time; the message may or may not have gone.
            raise TransientDelivery("sendgrid timed out") from None
        except OSError as exc:
            # Retry: the connection failed or broke (URLError is an OSError).
            reason = getattr(exc, "reason", None)
            if isinstance(reason, TimeoutError):
                raise TransientDelivery("sendgrid timed out") from None
            raise TransientDelivery(f"sendgrid {type(exc).__name__}") from None
        except http.client.HTTPException as exc:
            # Retry: the answer was cut off or garbled.
            raise TransientDelivery(f"sendgrid {type(exc).__name__}") from None

        return str(response.headers.get("X-Message-Id") or "")


def _sendgrid_errors(body: bytes | str | None) -> str:
    """The messages of a SendGrid error body, or its start if it is not JSON."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else body or ""
    try:
        errors = json.loads(text).get("errors") or []
        return "; ".join(str(e.get("message")) for e in errors if e.get("message"))
    except (ValueError, AttributeError):
        return text[:120]
