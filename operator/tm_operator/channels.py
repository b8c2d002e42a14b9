"""ReminderChannel: is it usable, and if not, what must a person fix.

The schema has already refused what it can see (a provider block that does
not match, a sender number that is not E.164 in form). What it cannot see is
checked here, in the order a person would fix it:

    SecretNotFound     a referenced Secret does not exist (in the same namespace)
    KeyMissing         the Secret exists but has no such key
    KeyMalformed       the value is empty, padded (a newline left by `echo`), or
                       not shaped like the credential it should be
    InvalidFromNumber  the sender number is E.164 in form but no numbering
                       plan assigns it (an area code that does not exist)
    Suspended          all is right, and `spec.suspend` holds reminders back
    Valid              ready

Credentials read here go only into the channel directory Secret; conditions
say which Secret and key, never a value.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import phonenumbers

from tm_operator import conditions
from tm_operator.conditions import Condition

log = logging.getLogger(__name__)

MESSAGE_CHANNEL = {"twilio": "sms", "sendgrid": "email"}
"""The message channel of reminders each provider sends."""

_ACCOUNT_SID = re.compile(r"^AC[0-9a-f]{32}$")
_AUTH_TOKEN = re.compile(r"^[0-9a-f]{32}$")
_SENDGRID_KEY = re.compile(r"^SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}$")

# What each credential must look like, and how to say it when it does not.
_SHAPES = {
    "accountSid": (
        _ACCOUNT_SID,
        "a Twilio account SID: AC and 32 lowercase hex digits",
    ),
    "authToken": (_AUTH_TOKEN, "a Twilio auth token: 32 lowercase hex digits"),
    "apiKey": (_SENDGRID_KEY, "a SendGrid API key: SG.<id>.<secret>"),
}
# The Secret references of each provider: credential name and spec field.
_REFS = {
    "twilio": (("accountSid", "accountSidRef"), ("authToken", "authTokenRef")),
    "sendgrid": (("apiKey", "apiKeyRef"),),
}

SecretReader = Callable[[str, str], Awaitable[Mapping[str, bytes] | None]]
"""`read(namespace, name)`: a Secret's data, or None when it does not exist."""


@dataclass(frozen=True)
class Verdict:
    """What a channel's check found, and what the worker may use of it."""

    condition: Condition
    provider: str
    sender: str
    per_minute: int
    suspended: bool
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def ready(self) -> bool:
        return self.condition.status


def _not_ready(reason: str, message: str, spec: Mapping[str, Any]) -> Verdict:
    provider = str(spec.get("provider", ""))
    return Verdict(
        condition=Condition(conditions.READY, False, reason, message),
        provider=provider,
        sender=_sender(spec),
        per_minute=_per_minute(spec),
        suspended=bool(spec.get("suspend")),
    )


def _sender(spec: Mapping[str, Any]) -> str:
    provider = str(spec.get("provider", ""))
    block = spec.get(provider) or {}
    return str(block.get("fromNumber") or block.get("fromEmail") or "")


def _per_minute(spec: Mapping[str, Any]) -> int:
    return int((spec.get("rateLimit") or {}).get("perMinute") or 60)


async def evaluate(
    namespace: str, spec: Mapping[str, Any], read: SecretReader
) -> Verdict:
    """Check a channel's spec against the Secrets it names."""
    provider = str(spec.get("provider", ""))
    block = spec.get(provider) or {}
    if provider not in _REFS or not block:
        # The schema refuses this; an object stored before it can still say so.
        return _not_ready(
            "InvalidSpec", f"spec.{provider or 'provider'} is missing", spec
        )

    # Each Secret is read once, however many keys of it are named.
    cache: dict[str, Mapping[str, bytes] | None] = {}
    credentials: dict[str, str] = {}
    for credential, ref_field in _REFS[provider]:
        ref = block.get(ref_field) or {}
        secret_name, key = str(ref.get("name", "")), str(ref.get("key", ""))
        where = f"spec.{provider}.{ref_field}"
        if secret_name not in cache:
            cache[secret_name] = await read(namespace, secret_name)
        data = cache[secret_name]

        if data is None:
            return _not_ready(
                "SecretNotFound",
                f"Secret {namespace}/{secret_name} named by {where} does not exist",
                spec,
            )
        if key not in data:
            return _not_ready(
                "KeyMissing",
                f"Secret {namespace}/{secret_name} has no key {key!r} ({where})",
                spec,
            )
        problem = _malformed(credential, data[key])
        if problem is not None:
            return _not_ready(
                "KeyMalformed",
                f"key {key!r} of Secret {namespace}/{secret_name} ({where}) {problem}",
                spec,
            )
        credentials[credential] = data[key].decode()

    if provider == "twilio" and not _assignable(str(block.get("fromNumber", ""))):
        return _not_ready(
            "InvalidFromNumber",
            "spec.twilio.fromNumber is E.164 in form but no numbering plan "
            "assigns it; use a number of the Twilio account",
            spec,
        )

    if spec.get("suspend"):
        condition = Condition(
            conditions.READY,
            False,
            "Suspended",
            "spec.suspend is true: reminders of this channel are held until "
            "it is false; the credentials are valid",
        )
    else:
        condition = Condition(
            conditions.READY,
            True,
            "Valid",
            f"credentials found and well formed; sending up to "
            f"{_per_minute(spec)} messages a minute per worker",
        )

    return Verdict(
        condition=condition,
        provider=provider,
        sender=_sender(spec),
        per_minute=_per_minute(spec),
        suspended=bool(spec.get("suspend")),
        credentials=credentials,
    )


def _malformed(credential: str, raw: bytes) -> str | None:
    """Why a credential's value cannot be right, or None when it can."""
    try:
        value = raw.decode()
    except UnicodeDecodeError:
        return "is not UTF-8 text"
    if not value:
        return "is empty"
    if value != value.strip():
        return (
            "has leading or trailing whitespace (a newline left by echo?); "
            "write it with printf or kubectl create secret --from-literal"
        )
    shape, description = _SHAPES[credential]
    if not shape.match(value):
        return f"is not {description}"

    return None


def _assignable(number: str) -> bool:
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return False

    return bool(phonenumbers.is_valid_number(parsed))


def status_of(
    verdict: Verdict, *, generation: int, previous: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The status subresource of a channel for this verdict."""
    old = (previous or {}).get("conditions") or []
    return {
        "observedGeneration": generation,
        "conditions": [
            conditions.render(verdict.condition, generation=generation, previous=old)
        ],
    }
