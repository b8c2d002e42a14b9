"""Errors the domain raises, grouped by how a caller reacts to them.

DomainError
├── InvalidInput          the caller sent something the rules refuse; say what
├── NotFound              no such task (or user's data) for this caller
├── Conflict              the caller's copy is stale; read again and retry
└── DeliveryError         a provider refused or failed a send
    ├── TransientDelivery     try again later, with backoff
    ├── PermanentDelivery     give up on this delivery now
    └── DeferredDelivery      not sent, not an attempt: due again after a wait
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of the input."""

    field: str
    message: str


class DomainError(Exception):
    """Base of every error the domain raises."""


class InvalidInput(DomainError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


class NotFound(DomainError):
    """`message` is what the caller reads: it names the kind of thing missing."""

    def __init__(self, key: str = "", *, message: str = "task not found") -> None:
        super().__init__(key)
        self.message = message


class Conflict(DomainError):
    pass


class NotAllowed(DomainError):
    """The caller may see the thing but not do this to it; says why."""


class DeliveryError(DomainError):
    """A send did not go through; `detail` is safe to store and show."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TransientDelivery(DeliveryError):
    pass


class PermanentDelivery(DeliveryError):
    pass


class DeferredDelivery(DeliveryError):
    """The channel may not send now (suspended, or at its rate limit).

    No provider was called, so the delivery keeps its attempts and is due
    again after `retry_after`; the lateness limit still ends the wait.
    """

    def __init__(self, detail: str, *, retry_after: timedelta) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
