"""Rate limits, cached views and idempotency keys on Redis, shared by replicas.

Each of the three is one small Lua script or pipeline, so that every step a
replica takes is atomic on the server: a limit cannot be overrun by two
replicas reading the same count, a stale view cannot be stored over an
invalidation, and two retries cannot both claim an idempotency key.

Keys start with a configurable prefix (several deployments, or tests, can
share one server) and carry the caller in a hash tag, `{tenant/user}`, so all
keys a script touches sit in one slot of a Redis Cluster.

A server that does not answer makes every call raise
`storage.StoreUnavailable` at once for `retry_s` seconds after the failure,
so requests do not queue behind a dead connection; the service decides what
each component does without Redis.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import orjson
import redis.asyncio as redis
from redis.exceptions import RedisError

from tm_domain import caching, limits, storage

T = TypeVar("T")

# The arrival times of the buckets, advanced only if every bucket allows.
# ARGV: now (ms), cost, then interval (ms) and capacity of each key.
_ACQUIRE = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local allowed = 1
local stored = {}
local advanced = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[1 + 2 * i])
  local capacity = tonumber(ARGV[2 + 2 * i])
  local found = redis.call('GET', key)
  stored[i] = found or ''
  local tat = now
  if found then tat = math.max(tonumber(found), now) end
  advanced[i] = tat + interval * cost
  if advanced[i] - now > interval * capacity + 1e-6 then allowed = 0 end
end
if allowed == 1 then
  for i, key in ipairs(KEYS) do
    local ttl = math.max(1, math.ceil(advanced[i] - now))
    redis.call('SET', key, string.format('%.3f', advanced[i]), 'PX', ttl)
  end
end
local reply = {allowed}
for i = 1, #KEYS do reply[i + 1] = stored[i] end
return reply
"""

# KEYS: the entry, its stamp. ARGV: body, stamp seen before the read, ttl (s).
_FILL = """
local stamp = redis.call('GET', KEYS[2]) or ''
if stamp ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
return 1
"""

# KEYS: entry, stamp, entry, stamp... ARGV: how long a stamp lives (s).
_INVALIDATE = """
for i = 1, #KEYS, 2 do
  redis.call('DEL', KEYS[i])
  redis.call('INCR', KEYS[i + 1])
  redis.call('EXPIRE', KEYS[i + 1], ARGV[1])
end
return #KEYS / 2
"""

# KEYS: the idempotency key. ARGV: the claim record, its lifetime (s).
_BEGIN = """
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ''
"""

# A stamp outlives every entry by far, so a read that began before an
# invalidation always sees the stamp move.
STAMP_TTL_S = 86_400


class RedisLink:
    """One Redis client, with a breaker that fails fast after an outage."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        retry_s: float,
        password: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`password` is used when the URL carries none."""
        self.client: redis.Redis = redis.Redis.from_url(
            url,
            password=password,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
        )
        self.retry_s = retry_s
        self.clock = clock
        self._closed_until = 0.0

    async def call(self, step: Callable[[redis.Redis], Awaitable[T]]) -> T:
        """Run `step` on the client; StoreUnavailable while Redis is out."""
        if self.clock() < self._closed_until:
            raise storage.StoreUnavailable("Redis: unavailable, not tried again yet")
        try:
            return await step(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._closed_until = self.clock() + self.retry_s
            raise storage.StoreUnavailable(f"Redis: {type(exc).__name__}") from exc

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()


def _bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisRateLimiter:
    """`limits.RateLimiter` on Redis: one script call per request.

    NB: the time is this process's clock, sent with each call, so the
    replicas' clocks must agree (NTP keeps them within milliseconds, far
    below the shortest interval of a limit); a test can drive it.
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        prefix: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.link = link
        self.prefix = prefix
        self.clock = clock
        self._script = link.client.register_script(_ACQUIRE)

    async def acquire(
        self, buckets: Sequence[limits.Bucket], *, cost: int = 1
    ) -> limits.Verdict:
        now_ms = self.clock() * 1000
        args: list[float | int] = [now_ms, cost]
        for bucket in buckets:
            args += [bucket.limit.interval_ms, bucket.limit.capacity]
        keys = [f"{self.prefix}rl:{bucket.key}" for bucket in buckets]

        reply = await self.link.call(
            lambda client: self._script(keys=keys, args=args, client=client)
        )
        stored = [None if not v else float(_text(v)) for v in reply[1:]]
        verdict, _ = limits.evaluate(
            [b.limit for b in buckets], stored, now_ms=now_ms, cost=cost
        )

        return verdict


class RedisViewCache:
    """`caching.ViewCache` on Redis: an entry and its stamp under each key."""

    def __init__(self, link: RedisLink, *, prefix: str) -> None:
        self.link = link
        self.prefix = prefix
        self._fill = link.client.register_script(_FILL)
        self._invalidate = link.client.register_script(_INVALIDATE)

    def _keys(self, key: str) -> list[str]:
        entry = f"{self.prefix}{key}"
        return [entry, f"{entry}:stamp"]

    async def read(self, key: str) -> caching.Cached:
        keys = self._keys(key)
        body, stamp = await self.link.call(lambda client: client.mget(keys))

        return caching.Cached(
            body=None if body is None else _bytes(body),
            stamp=None if stamp is None else _text(stamp),
        )

    async def fill(
        self, key: str, body: bytes, *, stamp: str | None, ttl_s: int
    ) -> bool:
        keys = self._keys(key)
        args: list[bytes | str | int] = [body, stamp or "", ttl_s]
        kept = await self.link.call(
            lambda client: self._fill(keys=keys, args=args, client=client)
        )

        return bool(kept)

    async def invalidate(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        pairs = [k for key in keys for k in self._keys(key)]
        await self.link.call(
            lambda client: self._invalidate(
                keys=pairs, args=[STAMP_TTL_S], client=client
            )
        )


class RedisIdempotencyStore:
    """`caching.IdempotencyStore` on Redis: one JSON record per key."""

    def __init__(self, link: RedisLink, *, prefix: str) -> None:
        self.link = link
        self.prefix = prefix
        self._begin = link.client.register_script(_BEGIN)

    def _key(self, key: str) -> str:
        return f"{self.prefix}idem:{key}"

    async def begin(self, key: str, fingerprint: str, *, lock_s: int) -> caching.Begun:
        record = orjson.dumps({"fingerprint": fingerprint, "state": "running"})
        keys = [self._key(key)]
        found = await self.link.call(
            lambda client: self._begin(keys=keys, args=[record, lock_s], client=client)
        )
        if not found:
            return caching.Begun(caching.Claim.STARTED)

        return _claim_of(orjson.loads(found), fingerprint)

    async def finish(
        self, key: str, fingerprint: str, answer: caching.Answer, *, ttl_s: int
    ) -> None:
        record = orjson.dumps(
            {
                "fingerprint": fingerprint,
                "state": "done",
                "status": answer.status,
                "body": answer.body.decode(),
            }
        )
        name = self._key(key)
        await self.link.call(lambda client: client.set(name, record, ex=ttl_s))

    async def abandon(self, key: str) -> None:
        name = self._key(key)
        await self.link.call(lambda client: client.delete(name))


def _claim_of(record: dict[str, Any], fingerprint: str) -> caching.Begun:
    """What a stored record means for a request with `fingerprint`."""
    if record.get("fingerprint") != fingerprint:
        return caching.Begun(caching.Claim.MISMATCH)
    if record.get("state") != "done":
        return caching.Begun(caching.Claim.RUNNING)

    answer = caching.Answer(int(record["status"]), str(record["body"]).encode())
    return caching.Begun(caching.Claim.DONE, answer)
