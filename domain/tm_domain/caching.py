"""Remembered answers: cached views, and batch answers kept for a retry.

Two ports, each with a shared implementation on Redis (several replicas see
the same entries) and an in-process one (one process, no server):

- a `ViewCache` holds rendered views under keys the service names. Every
  key has a stamp that each invalidation changes; a view read from the store
  is kept only if its key's stamp is still the one seen before the read, so
  a write that lands during the read can never be hidden behind a stale
  entry, and a client always reads its own writes;
- a `ViewGate` reads a cached view only for a caller the rate limits
  admit: it takes the limits' units and reads the entry in one step, so
  that the hottest read costs one trip to the server;
- an `IdempotencyStore` holds the first answer to a request sent with an
  `Idempotency-Key`, so that a retry gets that answer instead of running
  the request again.

All raise `storage.StoreUnavailable` when their server cannot be reached;
what the service then does is its own policy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from tm_domain import limits


@dataclass(frozen=True)
class Cached:
    """What a cache key holds: the view, if any, and the key's stamp."""

    body: bytes | None
    stamp: str | None
    """Changes with every invalidation of the key; None before the first."""


class ViewCache(Protocol):
    async def read(self, key: str) -> Cached:
        """The entry under `key`, with the stamp to fill it with on a miss."""
        ...

    async def fill(
        self, key: str, body: bytes, *, stamp: str | None, ttl_s: int
    ) -> bool:
        """Keep `body` under `key` for `ttl_s` seconds if the key's stamp is
        still `stamp`; False when an invalidation came in between."""
        ...

    async def invalidate(self, keys: Sequence[str]) -> None:
        """Drop the entries under `keys` and change their stamps."""
        ...


@dataclass(frozen=True)
class Admission:
    """What a gated read found: the verdict of each stage of limits taken, in
    order, and the entry when every stage allowed."""

    verdicts: Sequence[limits.Verdict]
    """One per stage taken; a refused stage is the last, its units untaken."""
    cached: Cached | None
    """The entry and its stamp; None when a stage refused."""

    @property
    def allowed(self) -> bool:
        return all(verdict.allowed for verdict in self.verdicts)


class Gated(Protocol):
    async def admit(self) -> Admission:
        """`ViewGate.admit` with the key and stages it was prepared with."""
        ...


class ViewGate(Protocol):
    def prepare(self, key: str, stages: Sequence[Sequence[limits.Bucket]]) -> Gated:
        """`admit` for this key and these stages, made ready once for the
        requests that repeat it (one caller reading one view): what can be
        worked out before a call is, once."""
        ...

    async def admit(
        self, key: str, stages: Sequence[Sequence[limits.Bucket]]
    ) -> Admission:
        """Take a unit from every bucket of each stage in turn, all of a
        stage or none of it (as `limits.RateLimiter.acquire`), stopping at
        the first stage refused; when every stage allowed, read `key` as
        `ViewCache.read` does. A stage refused leaves the later ones and the
        entry untouched."""
        ...


class Claim(StrEnum):
    STARTED = "started"
    """This request holds the key: run it, then `finish` or `abandon`."""
    RUNNING = "running"
    """Another request with this key is under way."""
    MISMATCH = "mismatch"
    """The key was used for a request with another body."""
    DONE = "done"
    """The answer is stored: send it again."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


@dataclass(frozen=True)
class Begun:
    claim: Claim
    answer: Answer | None = None
    """The stored answer, when `claim` is DONE."""


class IdempotencyStore(Protocol):
    async def begin(self, key: str, fingerprint: str, *, lock_s: int) -> Begun:
        """Claim `key` for a request whose body hashes to `fingerprint`.

        A claim that is neither finished nor abandoned lapses after
        `lock_s` seconds (the process running it died).
        """
        ...

    async def finish(
        self, key: str, fingerprint: str, answer: Answer, *, ttl_s: int
    ) -> None:
        """Store the answer under the key for `ttl_s` seconds."""
        ...

    async def abandon(self, key: str) -> None:
        """Release the key without an answer, so a retry runs the request."""
        ...
