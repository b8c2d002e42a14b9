"""Rate limits, cached views and idempotency keys in this process's memory.

The same ports as `tm_adapters.redis_state`, for a service that runs as one
process without Redis (a single machine, a test): every answer is the same
as Redis would give, but nothing is shared with another process and nothing
survives a restart. Entries past their lifetime are dropped when touched and
by an occasional sweep, so memory stays bounded by what is live.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tm_domain import caching, limits

# Expired entries are swept after this many writes.
_SWEEP_EVERY = 1000


@dataclass
class _Entry:
    value: Any
    expires_at: float


class _Expiring:
    """A dictionary whose entries lapse; the clock is in seconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.entries: dict[str, _Entry] = {}
        self._writes = 0

    def get(self, key: str) -> Any:
        entry = self.entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self.clock():
            del self.entries[key]
            return None

        return entry.value

    def put(self, key: str, value: Any, *, ttl_s: float) -> None:
        self.entries[key] = _Entry(value, self.clock() + ttl_s)
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = self.clock()
            for name in [k for k, e in self.entries.items() if e.expires_at <= now]:
                del self.entries[name]

    def drop(self, key: str) -> None:
        self.entries.pop(key, None)


class MemoryRateLimiter:
    """`limits.RateLimiter` in memory; `clock` is in seconds since the epoch."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._tats = _Expiring(clock)

    async def acquire(
        self, buckets: Sequence[limits.Bucket], *, cost: int = 1
    ) -> limits.Verdict:
        # NB: no await below, so the read and the write are one step.
        now_ms = self.clock() * 1000
        stored = [self._tats.get(bucket.key) for bucket in buckets]
        verdict, tats = limits.evaluate(
            [b.limit for b in buckets], stored, now_ms=now_ms, cost=cost
        )
        if verdict.allowed:
            for bucket, tat in zip(buckets, tats, strict=True):
                self._tats.put(bucket.key, tat, ttl_s=(tat - now_ms) / 1000)

        return verdict


class MemoryViewCache:
    """`caching.ViewCache` in memory, with the same stamps as on Redis."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries = _Expiring(clock)
        self._stamps: dict[str, str] = {}
        self._counter = itertools.count(1)

    async def read(self, key: str) -> caching.Cached:
        return caching.Cached(self._entries.get(key), self._stamps.get(key))

    async def fill(
        self, key: str, body: bytes, *, stamp: str | None, ttl_s: int
    ) -> bool:
        if self._stamps.get(key) != stamp:
            return False
        self._entries.put(key, body, ttl_s=ttl_s)

        return True

    async def invalidate(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._entries.drop(key)
            self._stamps[key] = str(next(self._counter))


class MemoryIdempotencyStore:
    """`caching.IdempotencyStore` in memory."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._records = _Expiring(clock)

    async def begin(self, key: str, fingerprint: str, *, lock_s: int) -> caching.Begun:
        found = self._records.get(key)
        if found is None:
            self._records.put(key, (fingerprint, None), ttl_s=lock_s)
            return caching.Begun(caching.Claim.STARTED)

        stored_fingerprint, answer = found
        if stored_fingerprint != fingerprint:
            return caching.Begun(caching.Claim.MISMATCH)
        if answer is None:
            return caching.Begun(caching.Claim.RUNNING)

        return caching.Begun(caching.Claim.DONE, answer)

    async def finish(
        self, key: str, fingerprint: str, answer: caching.Answer, *, ttl_s: int
    ) -> None:
        self._records.put(key, (fingerprint, answer), ttl_s=ttl_s)

    async def abandon(self, key: str) -> None:
        self._records.drop(key)
